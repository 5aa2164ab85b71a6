"""Sub-commands of the `segint` CLI; each module exposes ``register(subparsers)``."""
