"""TensorBoard scalars without the ``tensorboard`` package.

Since TensorFlow 2.16, ``tf.summary.scalar`` lives in the ``tensorboard`` package; TensorFlow
itself only keeps a stub that raises ``TBNotInstalledError``. tf-agents' agents call
``tf.compat.v2.summary.scalar`` unconditionally in their loss (``DqnAgent._loss`` logs the TD
loss), so without the package an agent cannot even train. When ``tensorboard`` is missing,
:func:`install_scalar_summaries` puts in a scalar summary built on TensorFlow's own
``tf.summary.write`` with the metadata the TensorBoard scalars plugin reads (plugin name
``scalars``, a float32 scalar tensor): the event files are the same as TensorBoard writes.
With ``tensorboard`` installed, it does nothing.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

_SCALARS_PLUGIN = "scalars"


def scalar(name: str, data, step=None, description: str | None = None):
    """``tf.summary.scalar``: write ``data`` as a TensorBoard scalar under ``name``."""
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=_SCALARS_PLUGIN),
        summary_description=description or "",
    )
    with tf.summary.experimental.summary_scope(name, "scalar_summary", values=[data, step]) as (
        tag,
        _,
    ):
        return tf.summary.write(
            tag=tag, tensor=tf.cast(data, tf.float32), step=step, metadata=metadata
        )


def tensorboard_installed() -> bool:
    try:
        import tensorboard.summary.v2  # noqa: F401
    except ImportError:
        return False
    return True


def install_scalar_summaries() -> None:
    """Make ``tf.summary.scalar`` work when the ``tensorboard`` package is not installed."""
    if tensorboard_installed():
        return
    tf.summary.scalar = scalar
    tf.compat.v2.summary.scalar = scalar
