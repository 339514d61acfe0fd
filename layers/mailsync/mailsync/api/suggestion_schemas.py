"""Schemas of the suggestions (``GET /v1/messages/{id}/suggestions`` and the ``suggestion`` of a
listed message with ``with_suggestions=true``); part of the public contract like ``schemas``.

``schemas.MessageSummary`` (and so every message view) derives from :class:`SuggestedMixin`:
``suggestion`` is written only where the use case set it, which is the unassigned list with
``with_suggestions=true``; everywhere else it is absent (generated clients keep their types).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

Reason = Literal["same_domain", "thread_linked", "co_participant", "name_match"]
REASONS_TEXT = (
    "Why, strongest first: `thread_linked` (another message of the thread is linked to the "
    "contact), `name_match` (a participant's display name equals the contact's name), "
    "`co_participant` (a participant appears in mail already linked to the contact), "
    "`same_domain` (a participant shares a domain with one of the contact's addresses; never "
    "a free-mail domain such as gmail.com or gmx.de, nor the caller's own company domain)"
)


class Suggestion(BaseModel):
    contact_id: str
    kind: Literal["customer", "intermediary"]
    name: str
    score: int = Field(
        ge=1,
        description="Sum of the reasons' points (thread_linked 40, name_match 30, co_participant 20 "
        "+ 2 per further linked mail up to +10, same_domain 10); higher is better",
    )
    reasons: list[Reason] = Field(min_length=1, description=REASONS_TEXT)


class SuggestionList(BaseModel):
    items: list[Suggestion] = Field(
        max_length=5, description="At most 5 contacts the caller may see, best first (ties by contact id)"
    )


class SuggestedMixin(BaseModel):
    suggestion: Suggestion | None = Field(
        None,
        description="Only with `unassigned=true&with_suggestions=true` (absent otherwise): the best "
        "contact to assign the mail to (the first of `GET /v1/messages/{id}/suggestions`), null "
        "when there is none",
    )

    @model_serializer(mode="wrap")
    def _only_when_asked(self, handler: SerializerFunctionWrapHandler):  # noqa: ANN202 - keeps the schema
        """``suggestion`` is left out unless the use case set it (even to null). No return
        annotation: pydantic then documents the model's own fields for serialization."""
        out = handler(self)
        if "suggestion" not in self.model_fields_set:
            out.pop("suggestion", None)
        return out
