"""Chat conversations of the browser UI, sealed under the audit log's subject keys."""

from __future__ import annotations

from appliance.conversations.store import Conversation, ConversationStore, ConversationSummary

__all__ = ["Conversation", "ConversationStore", "ConversationSummary"]
