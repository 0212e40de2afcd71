"""Edge agent: streams audio, scores 10-second windows, publishes alarms.

Never imports TensorFlow or `model_build`: it must install on a Raspberry Pi with numpy,
scipy, a TFLite runtime, sounddevice, paho-mqtt, pyyaml and typer alone.
"""

__version__ = "0.1.0"
