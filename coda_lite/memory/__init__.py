"""Coda Lite's memory: short-term turns, long-term SQLite facts, and the manager over both."""

from coda_lite.memory.extract import Fact, extract_facts
from coda_lite.memory.jsonfile import MemoryStoreError
from coda_lite.memory.long_term import LongTermMemory
from coda_lite.memory.manager import OPERATIONS, MemoryManager
from coda_lite.memory.short_term import ShortTermMemory

__all__ = [
    "OPERATIONS",
    "Fact",
    "LongTermMemory",
    "MemoryManager",
    "MemoryStoreError",
    "ShortTermMemory",
    "extract_facts",
]
