"""A registry of tf_keras networks by name, and the layers and losses they use."""
