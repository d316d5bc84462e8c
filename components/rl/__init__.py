"""The rl stage: tf-agents DQN and REINFORCE on Gym and Atari, a Policy out.

Its public names (no other stage calls it; the CLI and tests do):

    run          the stage core (core.run)
    RlOptions
"""

from edgeline.components.rl.options import RlOptions
from edgeline.pipeline.stage import lazy_public_names

__getattr__ = lazy_public_names(__name__, {"run": "core"})
__all__ = ["RlOptions", "run"]
