"""Field masks as the official Python client sees them, through `firegate
dev` (emulator mode, a real token) with the example people directory
(policies/people.yaml): an engineer's reads come back without the private
fields; the queries that would reveal them and a set() that would replace
them are refused.

  python masks.py --emulator 127.0.0.1:8080 --project demo --token JWT

Prints one JSON line per step; exits 1 if any expectation failed.
"""

import argparse
import json
import os
import queue
import sys

STEPS = ["get", "query", "getAll", "transaction", "listener", "whereMasked", "orderByMasked",
         "cursorMasked", "sumMasked", "setRefused", "updateAllowed"]


class Expectation(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise Expectation(message)


def masked(data, what):
    expect(data is not None, f"{what}: no data")
    for key in ["salary", "ssn", "tax.id"]:
        expect(key not in data, f"{what}: {key} shown: {data}")
    address = data.get("address", {})
    expect("street" not in address and "city" in address, f"{what}: address {address}")
    expect(isinstance(data.get("name"), str), f"{what}: name {data}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--emulator", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--project", default="demo")
    args = parser.parse_args()

    os.environ["FIRESTORE_EMULATOR_HOST"] = args.emulator
    from google.api_core import exceptions
    from google.cloud import firestore
    from google.cloud.firestore_v1 import _helpers
    from google.cloud.firestore_v1.base_query import FieldFilter

    db = firestore.Client(project=args.project)
    # Emulator mode sends `Bearer owner`; firegate wants the real token.
    db._rpc_metadata_internal = _helpers.metadata_with_prefix(db._database_string) + [
        ("authorization", f"Bearer {args.token}")]
    people = db.collection("people")
    ann = people.document("ann")

    def refused(call, what):
        try:
            call()
        except exceptions.PermissionDenied:
            return
        except Exception as error:  # noqa: BLE001 - the wrong refusal is the finding
            raise Expectation(f"{what}: want PermissionDenied, got {type(error).__name__}: {error}")
        raise Expectation(f"{what}: want PermissionDenied, but it succeeded")

    def query():
        docs = people.where(filter=FieldFilter("name", ">=", "A")).get()
        expect(len(docs) == 2, f"query: {len(docs)} documents")
        for d in docs:
            masked(d.to_dict(), f"query {d.id}")

    def get_all():
        for snap in db.get_all([ann, people.document("bob")]):
            masked(snap.to_dict(), f"getAll {snap.id}")

    def transaction():
        @firestore.transactional
        def read(tx):
            return ann.get(transaction=tx).to_dict()

        masked(read(db.transaction()), "transaction read")

    def listener():
        seen = queue.Queue()
        watch = ann.on_snapshot(lambda docs, changes, read_time: seen.put(docs[0].to_dict() if docs else None))
        try:
            masked(seen.get(timeout=20), "listener")
        finally:
            watch.unsubscribe()

    def update_allowed():
        ann.update({"name": "Ann (python)"})
        data = ann.get().to_dict()
        expect(data["name"] == "Ann (python)", f"update: {data}")
        masked(data, "after update")

    table = {
        "get": lambda: masked(ann.get().to_dict(), "get"),
        "query": query,
        "getAll": get_all,
        "transaction": transaction,
        "listener": listener,
        "whereMasked": lambda: refused(lambda: people.where(filter=FieldFilter("salary", ">", 0)).get(), "where salary > 0"),
        "orderByMasked": lambda: refused(lambda: people.order_by("salary").get(), "order_by salary"),
        "cursorMasked": lambda: refused(lambda: people.order_by("salary").start_at({"salary": 100000}).get(),
                                        "a cursor on salary"),
        "sumMasked": lambda: refused(lambda: people.sum("salary").get(), "sum salary"),
        "setRefused": lambda: refused(lambda: ann.set({"name": "Ann"}), "set() without merge"),
        "updateAllowed": update_allowed,
    }
    failed = False
    for name in STEPS:
        line = {"client": "python", "step": name}
        try:
            table[name]()
            line["ok"] = True
        except Exception as error:  # noqa: BLE001 - every failure is reported, then the next step runs
            failed = True
            line["ok"] = False
            line["error"] = f"{type(error).__name__}: {error}"
        print(json.dumps(line), flush=True)
    db.close()
    sys.stdout.flush()
    os._exit(1 if failed else 0)


if __name__ == "__main__":
    main()
