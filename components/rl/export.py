"""Export of a trained policy: a SavedModel of the greedy policy and a ``.tflite`` network.

- ``saved_policy/``: tf-agents' ``PolicySaver`` output (signatures ``action``,
  ``get_initial_state``, ``get_train_step``), loadable with ``tf.saved_model.load`` in Python or
  served; it takes a whole ``TimeStep`` and returns the greedy action.
- ``policy.tflite``: the network alone, for a phone: it takes one observation, shape
  (1, *observation_shape) in the environment's dtype, and returns the action values (DQN:
  Q-values) or the action logits (REINFORCE); the app acts with their argmax, which is what the
  greedy policy does.

:func:`check_parity` replays the SavedModel policy in the environment, records the
observations it sees, and counts how often the TFLite model picks the same action.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from tf_agents.policies import policy_saver
from tf_agents.trajectories import time_step as ts

from edgeline.common.artifact_types.policy import SAVED_POLICY_DIR, TFLITE_FILE

# The shared LiteRT runner of a policy network: the evaluate stage scores a Policy artifact's
# .tflite with it, and the parity check below uses the same one.
from edgeline.common.litert import TFLitePolicy

__all__ = ["TFLitePolicy", "check_parity", "record_observations", "save_policy", "save_tflite",
           "write_json"]


def save_policy(policy, directory: Path) -> Path:
    """The greedy ``policy`` as a SavedModel at ``directory/saved_policy``."""
    path = Path(directory) / SAVED_POLICY_DIR
    policy_saver.PolicySaver(policy, batch_size=None).save(str(path))
    return path


def network_outputs(network, observation: tf.Tensor, output_kind: str) -> tf.Tensor:
    """(B, *obs) -> (B, num_actions): Q-values of a Q-network or logits of an actor network."""
    outputs, _ = network(observation, step_type=None, network_state=(), training=False)
    if output_kind == "logits":
        return outputs.logits_parameter()  # a Categorical over the actions
    return outputs


def save_tflite(network, observation_spec, output_kind: str, directory: Path) -> Path:
    """``network`` as ``directory/policy.tflite``: observation (1, *shape) -> action values."""
    input_spec = tf.TensorSpec(
        (1, *observation_spec.shape), observation_spec.dtype, name="observation"
    )

    @tf.function(input_signature=[input_spec])
    def serve(observation):
        return {output_kind: network_outputs(network, observation, output_kind)}

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], network
    )
    path = Path(directory) / TFLITE_FILE
    path.write_bytes(converter.convert())
    return path


def _batched_time_step(time_step: ts.TimeStep) -> ts.TimeStep:
    return tf.nest.map_structure(lambda value: tf.convert_to_tensor(value)[None], time_step)


def record_observations(saved_policy_dir: Path, environment, count: int, *, seed: int):
    """Run the SavedModel policy in ``environment`` and record ``count`` observations with the
    action it chose for each. Episodes are seeded seed, seed + 1, ..."""
    policy = tf.saved_model.load(str(saved_policy_dir))
    observations, actions = [], []
    episode = 0
    while len(observations) < count:
        environment.seed(seed + episode)
        time_step = environment.reset()
        while not time_step.is_last() and len(observations) < count:
            action = int(policy.action(_batched_time_step(time_step)).action.numpy()[0])
            observations.append(np.array(time_step.observation))
            actions.append(action)
            time_step = environment.step(np.asarray(action, dtype=np.int64))
        episode += 1
    return np.stack(observations), np.asarray(actions, dtype=np.int64)


def check_parity(saved_policy_dir: Path, tflite_path: Path, environment, count: int, *, seed: int):
    """How often the TFLite network's argmax equals the SavedModel policy's action."""
    observations, saved_actions = record_observations(
        saved_policy_dir, environment, count, seed=seed
    )
    tflite = TFLitePolicy(tflite_path)
    tflite_actions = np.asarray([tflite.action(obs) for obs in observations], dtype=np.int64)
    agreeing = int(np.sum(tflite_actions == saved_actions))
    return {
        "observations": int(len(observations)),
        "agreeing_actions": agreeing,
        "action_agreement": agreeing / len(observations),
    }


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON through a temporary file and a rename (never half-written)."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)
