"""edgeline: a Keras/TensorFlow pipeline from raw data to a phone.

TF-MOT and tf-agents need the Keras 2 API, so every model here is a ``tf_keras`` model. The
switch must be set before anything imports TensorFlow, which is why it lives in the root
package's first lines.

TensorFlow's C++ logging is also set here, before TensorFlow loads, to errors only, unless the
user set it or asked for everything (``EDGELINE_VERBOSE=1``; ``edgeline -v`` undoes the default
through :data:`QUIETED_ENV`, see ``edgeline.pipeline.console``).
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# -v's variable: set, every process of the command shows everything (Beam workers, tools).
VERBOSE_ENV = "EDGELINE_VERBOSE"
# The variables set here by default (not by the user), which -v removes again.
QUIETED_ENV: tuple[str, ...] = ()
if os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("1", "true", "yes", "on"):
    QUIETED_ENV = tuple(name for name in ("TF_CPP_MIN_LOG_LEVEL",) if name not in os.environ)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
