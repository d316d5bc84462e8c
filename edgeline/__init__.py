"""edgeline: a Keras/TensorFlow pipeline from raw data to a phone.

TF-MOT and tf-agents need the Keras 2 API, so every model here is a ``tf_keras`` model. The
switch must be set before anything imports TensorFlow, which is why it lives in the root
package's first lines.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
