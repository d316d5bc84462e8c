"""The stages: one subpackage each, a pure core (``run``) plus a thin CLI binding."""
