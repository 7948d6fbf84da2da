"""The commands on the saved history: `history`, `export`, `import`, `delete` and `share`.

An imported entry's every field is someone else's text: each is printed on one line, cleaned
for a terminal (`lib.cli.output`).
"""

from __future__ import annotations

import argparse
import sys

from lib.cli.output import out, print_json, say
from lib.core.text import one_line, terminal


def history(args: argparse.Namespace) -> int:
    from lib.records import documents, wording
    from lib.records.store import DamagedEntryError, Store, StoreError

    store = Store(on_wait=say)
    if args.command == "history":
        entries = store.list(model_id=args.model, device=args.device, since=args.since)
        if args.json:
            return print_json(entries)
        for e in entries:
            # An imported entry's every field is someone else's text: one line per entry.
            cell = {key: one_line(e[key] or "", 300) for key in
                    ("created_at", "device", "status", "imported_from", "note")}
            origin = f"  imported from {cell['imported_from']}" if e["imported_from"] else ""
            shared = "  shared" if e["shared"] else ""
            # An estimate's device is a hardware profile ('h100-sxm x 8'): say it was modelled.
            device = cell["device"] + ("" if e["provenance"] == "measured" else
                                       f" ({one_line(e['provenance'], 40)})")
            # Two spaces between columns whatever their widths ('cancelled', a long device).
            out("  ".join([f"#{e['id']:<4}", cell["created_at"], f"{device:<6}",
                           f"{cell['status']:<9}", one_line(wording.entry_label(e), 300)])
                + f"{shared}{origin}  {cell['note']}")
        return 0
    if args.command == "share":
        store.set_shared(args.entry_id, not args.off)
        out(f"#{args.entry_id} is {'no longer ' if args.off else ''}shared with the class")
        return 0
    if args.command == "export":
        try:
            document = store.export(args.entry_id)
            opened = documents.open_entry(document, args.entry_id)   # the CSV, and a check
        except DamagedEntryError as exc:
            raise DamagedEntryError(f"#{args.entry_id}", f"{exc.reason.rstrip('.')}. `python -m "
                                    f"lib delete {args.entry_id}` removes it.") from None
        if not args.csv:
            return print_json(document)
        sys.stdout.write(terminal(opened.csv))
        return 0
    if args.command == "delete":
        if not store.delete(args.entry_id):
            raise StoreError(f"No saved run or sweep with id {args.entry_id}: `python -m lib "
                             "history` lists them.")
        out(f"deleted #{args.entry_id}")
        return 0
    from lib.records import imports

    out(f"imported as #{store.import_document(imports.check_file(args.file).document)}")
    return 0
