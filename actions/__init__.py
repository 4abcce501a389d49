"""Custom actions, served by `rasa run actions --actions actions`."""
from kefu import sdk_speedups

sdk_speedups.apply()  # the action server parses Rasa's tracker JSON with orjson
