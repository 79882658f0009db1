"""Speech in and out: pocketsphinx recognition, espeak-ng synthesis, WAV handling, sentences.

from coda_lite.speech.stt import make_stt       # WAV bytes or path -> text
from coda_lite.speech.tts import make_tts       # text -> WAV bytes (espeak-ng or none)
from coda_lite.speech.audio import load_pcm16   # any WAV -> 16 kHz mono 16-bit PCM
from coda_lite.speech.sentences import SentenceSplitter   # streamed text -> sentences
"""
