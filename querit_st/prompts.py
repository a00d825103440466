"""The Querit prompt: the paper's instruction, the query prefix of pair (encoder) models and the single-sequence
template of decoder checkpoints.

The paper scores ``"{instruction} Query: {query}; Content: {doc}"`` with the default instruction ``"Judge whether the
Content meets the requirements based on the Query."``. An encoder cross-encoder reads a *pair* of segments, so there
the same prompt is the pair ``("{instruction} Query: {query}", doc)`` (:func:`querit_prefix`); a decoder reads the
whole sequence (:func:`format_querit_prompt`, :func:`render_querit_text`).
"""

from __future__ import annotations

__all__ = [
    "QUERIT_INSTRUCTION",
    "QUERIT_PROMPT",
    "QUERIT_PROMPT_NAME",
    "QUERIT_TEMPLATE",
    "format_querit_prompt",
    "querit_prefix",
    "render_querit_text",
]

QUERIT_INSTRUCTION = "Judge whether the Content meets the requirements based on the Query."
QUERIT_PROMPT_NAME = "querit"
#: The query-side prefix of the Querit prompt for pair (encoder) models.
QUERIT_PROMPT = f"{QUERIT_INSTRUCTION} Query: "
#: The full single-sequence template used by decoder (Querit/Qwen3) checkpoints.
QUERIT_TEMPLATE = "{instruction} Query: {query}; Content: {doc}"


def querit_prefix(instruction: str | None = None) -> str:
    """The query prefix for an instruction (``None`` gives the paper's default instruction)."""
    instruction = QUERIT_INSTRUCTION if instruction is None else instruction.strip()
    return f"{instruction} Query: " if instruction else "Query: "


def format_querit_prompt(query: str, doc: str, instruction: str | None = None) -> str:
    """The paper's single-sequence prompt ``"{instruction} Query: {query}; Content: {doc}"``, instruction stripped."""
    instruction = QUERIT_INSTRUCTION if instruction is None else instruction.strip()
    return QUERIT_TEMPLATE.format(instruction=instruction, query=query, doc=doc)


def render_querit_text(query: str, doc: str, instruction: str | None = None, prompt: str | None = None) -> str:
    """The single sequence a Querit decoder scores.

    - ``instruction`` given: ``f"{instruction} Query: {query}; Content: {doc}"`` (exactly mteb's
      ``QueritWrapper.format_instruction``; the instruction is used verbatim).
    - else ``prompt`` given (what ``CrossEncoder.predict(prompt=...)`` and
      ``QueritCrossEncoder.predict(instruction=...)`` pass): a prompt ending in ``"Query:"`` / ``"Query: "`` is the
      prefix before the query (``f"{prompt}{query}; Content: {doc}"``, which is what :func:`querit_prefix`
      builds); any other prompt is an instruction.
    - neither (or empty): the paper's default instruction.
    """
    if instruction is None and prompt:
        if prompt.rstrip().endswith("Query:"):
            prefix = prompt if prompt.endswith(" ") else prompt + " "
            return f"{prefix}{query}; Content: {doc}"
        instruction = prompt.strip()
    if instruction is None:
        instruction = QUERIT_INSTRUCTION
    return QUERIT_TEMPLATE.format(instruction=instruction, query=query, doc=doc)
