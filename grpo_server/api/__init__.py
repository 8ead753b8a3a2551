"""The trainer's gRPC API: servicer, validation, auth, server bootstrap, proto<->types conversion.

Import the parts from their modules (grpo_server.api.server, .servicer, ...); this package keeps its
import light because config.py imports grpo_server.api.settings.
"""
