"""The headless contract (docs/HEADLESS.md): `contract` holds `lanchat run [--json]`,
`send`, `peers`, `id`, `plugins` and `doctor`; `schema.json` is the JSON Schema of every
event."""

from lanchat.headless.contract import (
    TextPrinter,
    describe,
    doctor,
    list_plugins,
    peers,
    run,
    send,
    show_id,
)

__all__ = ["TextPrinter", "describe", "doctor", "list_plugins", "peers", "run", "send",
           "show_id"]
