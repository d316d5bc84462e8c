"""The rl stage."""
