"""Coda Lite: a local, offline voice assistant (STT, memory, LLM, TTS)."""

__version__ = "0.1.0"
