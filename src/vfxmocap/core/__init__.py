"""Config, errors, logging and progress/cancel primitives shared by every layer."""
