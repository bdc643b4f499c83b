"""Mapping files: provider webhooks -> canonical events, declared in YAML with JMESPath expressions.

    mappings = load_mappings(Path("mappings"))          # compile every file once (raises MappingError)
    problems = check_mappings(Path("mappings"))         # every problem, for `bridge check`
    names = produced_names(Path("mappings"))            # every event name the files emit (config checks routing)
    mapping = mappings.get("stripe")
    events = mapping.evaluate(inbound, headers=headers, source="stripe", provider="stripe")

See docs/mappings.md for the file format and the functions.
"""

from __future__ import annotations

from bridge.mapping.compile import check_mappings, compile_file, load_mappings, produced_names
from bridge.mapping.evaluate import CompiledMapping, MappingSet

__all__ = ["CompiledMapping", "MappingSet", "check_mappings", "compile_file", "load_mappings", "produced_names"]
