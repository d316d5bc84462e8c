"""Q-networks for value-based agents (DQN and its variants), registered as ``q_network`` presets.

A tf-agents agent needs a ``tf_agents.networks.Network`` (called as ``net(observation,
step_type, network_state)``), not a Keras model, so :func:`q_network` builds a
``tf_agents.networks.Sequential`` of tf_keras layers from a preset's layer spec. The presets:

- ``dqn_mlp_100_50``: the tf-agents DQN tutorial's network for classic control (two ReLU
  layers of 100 and 50 units).
- ``dqn_mlp_256_256``: two ReLU layers of 256 units, the network of the rl-baselines3-zoo
  DQN settings for CartPole-v1 (Raffin, 2020).
- ``dqn_nips_2013``: Mnih et al., "Playing Atari with Deep Reinforcement Learning" (NIPS Deep
  Learning Workshop, 2013): 16 8x8 filters stride 4, 32 4x4 filters stride 2, 256 units.
- ``dqn_nature_2015``: Mnih et al., "Human-level control through deep reinforcement learning"
  (Nature 518, 2015): 32 8x8/4, 64 4x4/2, 64 3x3/1 convolutions, 512 units.

    from edgeline import models
    q_net = models.build("dqn_nature_2015", num_classes=6, input_shape=(84, 84, 4))
    q_values, _ = q_net(frames)  # (B, 84, 84, 4) uint8 -> (B, 6)

``num_classes`` is the number of actions. The Atari presets take the uint8 frame stack as it
comes from the environment and scale it to [0, 1] in their first layer, so that the replay
buffer stores bytes (4x smaller than floats) and an exported TFLite model takes the same uint8
observation the app sees.

TensorFlow is imported only when a network is built: the registry imports this module to list
its names.
"""

from __future__ import annotations

from edgeline.models.registry import register

_ScaleInput = None  # the layer class, defined on first build (see _scale_input_class)


def _scale_input_class():
    """``ScaleInput``: casts to float32 and multiplies by ``scale`` (1/255: uint8 -> [0, 1])."""
    global _ScaleInput
    if _ScaleInput is None:
        import tensorflow as tf
        import tf_keras as keras

        @keras.saving.register_keras_serializable(package="edgeline")
        class ScaleInput(keras.layers.Layer):
            def __init__(self, scale: float, **kwargs):
                super().__init__(**kwargs)
                self.scale = float(scale)

            def call(self, inputs):
                return tf.cast(inputs, tf.float32) * self.scale

            def get_config(self):
                return {**super().get_config(), "scale": self.scale}

        _ScaleInput = ScaleInput
    return _ScaleInput


def q_network_layers(
    num_actions: int,
    *,
    conv_layers: tuple[tuple[int, int, int], ...] = (),
    dense_layers: tuple[int, ...] = (),
    input_scale: float | None = None,
) -> list:
    """The layers: [scale] -> conv (filters, kernel, stride)... -> flatten -> dense... -> Q."""
    import tf_keras as keras

    layers = []
    if input_scale is not None:
        layers.append(_scale_input_class()(input_scale, name="scale_input"))

    def hidden_init():
        # He initialization for ReLU layers (He et al., 2015), as the tf-agents DQN examples
        # use; one instance per layer (an initializer instance reused gives equal draws).
        return keras.initializers.VarianceScaling(
            scale=2.0, mode="fan_in", distribution="truncated_normal"
        )

    for index, (filters, kernel_size, strides) in enumerate(conv_layers):
        layers.append(
            keras.layers.Conv2D(
                filters=filters,
                kernel_size=kernel_size,
                strides=strides,
                activation="relu",
                kernel_initializer=hidden_init(),
                name=f"conv{index}",
            )
        )  # (B, H', W', filters)
    if conv_layers:
        layers.append(keras.layers.Flatten(name="flatten"))  # (B, H' * W' * filters)
    for index, units in enumerate(dense_layers):
        layers.append(
            keras.layers.Dense(
                units, activation="relu", kernel_initializer=hidden_init(), name=f"dense{index}"
            )
        )
    # Small initial action values, so that no action dominates before learning starts (the
    # tf-agents DQN example: uniform(-0.03, 0.03) weights, -0.2 bias).
    layers.append(
        keras.layers.Dense(
            num_actions,
            activation=None,
            kernel_initializer=keras.initializers.RandomUniform(minval=-0.03, maxval=0.03),
            bias_initializer=keras.initializers.Constant(-0.2),
            name="action_values",
        )
    )  # (B, num_actions)
    return layers


def q_network(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    name: str,
    conv_layers: tuple[tuple[int, int, int], ...] = (),
    dense_layers: tuple[int, ...] = (100, 50),
    input_scale: float | None = None,
):
    """A ``tf_agents.networks.Sequential`` Q-network: observation (B, *input_shape) ->
    action values (B, num_classes). The registry's builder for the ``q_network`` presets."""
    from tf_agents.networks import sequential

    if num_classes < 2:
        raise ValueError(f"Received: num_classes={num_classes}; a Q-network needs >= 2 actions")
    if conv_layers and len(input_shape) != 3:
        raise ValueError(
            f"Received: input_shape={tuple(input_shape)}; convolutional Q-network {name!r} "
            "takes frames (height, width, channels)"
        )
    layers = q_network_layers(
        num_classes, conv_layers=conv_layers, dense_layers=dense_layers, input_scale=input_scale
    )
    return sequential.Sequential(layers, name=f"QNetwork_{name}")


_BUILDER = "edgeline.models.qnetworks:q_network"
_ATARI_INPUT = (84, 84, 4)

register(
    "dqn_mlp_100_50",
    _BUILDER,
    preset={"dense_layers": (100, 50)},
    default_input_shape=(4,),  # CartPole's observation
    default_num_classes=2,
    task="q_network",
    description="Q-network MLP (100, 50), the tf-agents DQN tutorial's, for classic control",
    min_input_size=0,
)
register(
    "dqn_mlp_256_256",
    _BUILDER,
    preset={"dense_layers": (256, 256)},
    default_input_shape=(4,),
    default_num_classes=2,
    task="q_network",
    description="Q-network MLP (256, 256), the rl-baselines3-zoo CartPole DQN network",
    min_input_size=0,
)
register(
    "dqn_nips_2013",
    _BUILDER,
    preset={
        "conv_layers": ((16, 8, 4), (32, 4, 2)),
        "dense_layers": (256,),
        "input_scale": 1.0 / 255.0,
    },
    default_input_shape=_ATARI_INPUT,
    default_num_classes=6,  # Pong's minimal action set
    task="q_network",
    description="Atari Q-network of Mnih et al. 2013: conv 16 8x8/4, 32 4x4/2, fc 256",
    # Two valid convolutions 8/4 then 4/2 need at least 20 pixels.
    min_input_size=20,
)
register(
    "dqn_nature_2015",
    _BUILDER,
    preset={
        "conv_layers": ((32, 8, 4), (64, 4, 2), (64, 3, 1)),
        "dense_layers": (512,),
        "input_scale": 1.0 / 255.0,
    },
    default_input_shape=_ATARI_INPUT,
    default_num_classes=6,
    task="q_network",
    description="Atari Q-network of Mnih et al. 2015 (Nature): conv 32 8x8/4, 64 4x4/2, "
    "64 3x3/1, fc 512",
    min_input_size=36,  # 8/4, 4/2 and 3/1 valid convolutions
)
