"""The live hub per camera stream (GOP cache) and the fan-out to viewers."""
