"""Drives the official Python Firestore client (gRPC only) against a Firestore
gRPC endpoint: firegate's emulator, or firegate in front of it.

  python client.py --emulator 127.0.0.1:8081 --project demo --prefix run1
  python client.py --endpoint 127.0.0.1:8443 --tls-root ca.pem --token JWT ...

--emulator  plaintext, emulator mode: the client sends `Bearer owner`, or
            --token in its place (firegate in front of the emulator)
--endpoint  TLS to host:port (trusting --tls-root), --token as call credentials
--deny      steps expected to be refused with PERMISSION_DENIED
Prints one JSON line per step; exits 1 if any expectation failed.
Steps run in order and later ones read what earlier ones wrote.
"""

import argparse
import json
import os
import queue
import sys
import threading
import time
import traceback

STEPS = ["set", "get", "update", "delete", "query", "aggregate", "batch",
         "transaction", "listCollections", "watchDocument", "watchQuery", "cleanup"]
# How long a listener may take to hear a change; generous for a loaded CI box.
WAIT = 20


class Expectation(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise Expectation(message)


def same(actual, wanted, what):
    expect(actual == wanted, f"{what}: got {actual!r}, want {wanted!r}")


def refused(exception_type, call, what):
    try:
        call()
    except exception_type:
        return
    except Exception as error:  # noqa: BLE001 - the wrong refusal is the finding
        raise Expectation(f"{what}: want {exception_type.__name__}, got {type(error).__name__}: {error}")
    raise Expectation(f"{what}: want {exception_type.__name__}, but it succeeded")


def client(args):
    from google.cloud import firestore
    if args.emulator:
        os.environ["FIRESTORE_EMULATOR_HOST"] = args.emulator
        db = firestore.Client(project=args.project)
        if args.token:
            # In emulator mode the client adds `Bearer owner` to every call's
            # metadata and offers no option for another token: replace it.
            from google.cloud.firestore_v1 import _helpers
            db._rpc_metadata_internal = _helpers.metadata_with_prefix(db._database_string) + [
                ("authorization", f"Bearer {args.token}")]
        return db
    import google.oauth2.credentials
    from google.api_core.client_options import ClientOptions
    if args.tls_root:
        # grpcio reads its trust roots from here when none are passed in code.
        os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = args.tls_root
    os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
    credentials = google.oauth2.credentials.Credentials(token=args.token)
    return firestore.Client(project=args.project, credentials=credentials,
                            client_options=ClientOptions(api_endpoint=args.endpoint))


class Events:
    """Snapshots a listener delivered, waited on from the test's thread."""

    def __init__(self):
        self.queue = queue.Queue()
        self.errors = []

    def callback(self, *snapshot):
        self.queue.put(snapshot)

    def wait_for(self, predicate, what):
        deadline = time.monotonic() + WAIT
        seen = []
        while time.monotonic() < deadline:
            try:
                snapshot = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(snapshot)
            if predicate(*snapshot):
                return snapshot
        raise Expectation(f"{what}: no such snapshot within {WAIT}s ({len(seen)} others)")


def steps(db, args):
    from google.api_core import exceptions
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter

    col = db.collection(f"{args.prefix}_py")
    alpha = col.document("alpha")
    sub = f"{args.prefix}_py_sub"

    def set_():
        alpha.set({"name": "alpha", "n": 1, "tags": ["x"], "nested": {"a": True}})
        col.document("beta").set({"name": "beta", "n": 2})
        col.document("gamma").set({"name": "gamma", "n": 3})

    def get():
        snap = alpha.get()
        expect(snap.exists, "alpha exists")
        same([snap.get("name"), snap.get("n"), snap.get("tags"), snap.get("nested")],
             ["alpha", 1, ["x"], {"a": True}], "alpha")
        expect(not col.document("nope").get().exists, "a missing document does not exist")
        got = {s.id: s.exists for s in db.get_all([alpha, col.document("nope")])}
        same(got, {"alpha": True, "nope": False}, "get_all")

    def update():
        before = alpha.get()
        alpha.update({"n": 10}, option=db.write_option(last_update_time=before.update_time))
        refused(exceptions.FailedPrecondition,
                lambda: alpha.update({"n": 99}, option=db.write_option(last_update_time=before.update_time)),
                "stale last_update_time")
        refused(exceptions.NotFound, lambda: col.document("nope").update({"n": 1}), "update of a missing document")
        refused(exceptions.Conflict, lambda: alpha.create({"n": 0}), "create over an existing document")
        same(alpha.get().get("n"), 10, "alpha.n after update")

    def delete():
        col.document("gamma").delete()
        expect(not col.document("gamma").get().exists, "gamma is gone")

    def query():
        top = col.where(filter=FieldFilter("n", ">=", 2)).order_by("n", direction=firestore.Query.DESCENDING).limit(1).get()
        same([d.id for d in top], ["alpha"], "n >= 2 desc limit 1")
        both = col.where(filter=FieldFilter("n", ">=", 2)).order_by("n").get()
        same([(d.id, d.get("n")) for d in both], [("beta", 2), ("alpha", 10)], "n >= 2 asc")
        tagged = col.where(filter=FieldFilter("tags", "array_contains", "x")).get()
        same([d.id for d in tagged], ["alpha"], "array_contains")

    def aggregate():
        results = col.count(alias="all").sum("n", alias="total").avg("n", alias="mean").get()
        values = {r.alias: r.value for r in results[0]}
        same(values, {"all": 2, "total": 12, "mean": 6.0}, "count, sum and avg")
        same(col.where(filter=FieldFilter("n", ">", 5)).count().get()[0][0].value, 1, "count() with a filter")

    def batch():
        writes = db.batch()
        writes.set(col.document("delta"), {"name": "delta", "n": 4})
        writes.update(alpha, {"batched": True, "n": firestore.Increment(1)})
        writes.delete(col.document("beta"))
        writes.commit()
        a, b, d = (db.collection(col.id).document(i).get() for i in ["alpha", "beta", "delta"])
        same([a.get("batched"), a.get("n"), b.exists, d.get("name")], [True, 11, False, "delta"], "after the batch")

    def transaction():
        @firestore.transactional
        def bump(tx):
            snap = alpha.get(transaction=tx)
            tx.update(alpha, {"n": snap.get("n") + 1})
            return snap.get("n") + 1

        same(bump(db.transaction()), 12, "transaction result")
        same(alpha.get().get("n"), 12, "alpha.n after the transaction")

    def list_collections():
        alpha.collection(sub).document("s1").set({"i": 1})
        top = [c.id for c in db.collections()]
        expect(col.id in top, f"collections() has {col.id}: {top}")
        same([c.id for c in alpha.collections()], [sub], "alpha.collections()")

    def watch_document():
        events = Events()
        watch = alpha.on_snapshot(events.callback)
        try:
            events.wait_for(lambda docs, changes, read_time: docs and docs[0].get("n") == 12, "the first snapshot")
            alpha.update({"n": 13})
            events.wait_for(lambda docs, changes, read_time: docs and docs[0].get("n") == 13, "the update")
        finally:
            watch.unsubscribe()

    def watch_query():
        events = Events()
        watch = col.where(filter=FieldFilter("n", ">=", 5)).on_snapshot(events.callback)

        def kinds(changes):
            return sorted((c.type.name, c.document.id) for c in changes)

        try:
            events.wait_for(lambda docs, changes, read_time: [d.id for d in docs] == ["alpha"], "the first snapshot")
            col.document("epsilon").set({"n": 50})
            events.wait_for(lambda docs, changes, read_time: kinds(changes) == [("ADDED", "epsilon")], "a document joins")
            col.document("epsilon").update({"n": 51})
            events.wait_for(lambda docs, changes, read_time: kinds(changes) == [("MODIFIED", "epsilon")], "a change")
            alpha.update({"n": 0})
            events.wait_for(lambda docs, changes, read_time: kinds(changes) == [("REMOVED", "alpha")], "a document leaves")
            col.document("epsilon").delete()
            events.wait_for(lambda docs, changes, read_time: kinds(changes) == [("REMOVED", "epsilon")] and not docs,
                            "a delete")
        finally:
            watch.unsubscribe()

    def cleanup():
        db.recursive_delete(col)
        same(len(col.get()), 0, "documents left after recursive_delete")

    return {
        "set": set_, "get": get, "update": update, "delete": delete, "query": query,
        "aggregate": aggregate, "batch": batch, "transaction": transaction,
        "listCollections": list_collections, "watchDocument": watch_document,
        "watchQuery": watch_query, "cleanup": cleanup,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--emulator")
    parser.add_argument("--endpoint")
    parser.add_argument("--tls-root")
    parser.add_argument("--token")
    parser.add_argument("--project", default="demo-firegate")
    parser.add_argument("--prefix", default=f"run{int(time.time())}")
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--deny", default="")
    args = parser.parse_args()
    if not args.emulator and not args.endpoint:
        parser.error("--emulator or --endpoint is required")
    deny = set(filter(None, args.deny.split(",")))

    from google.api_core import exceptions
    db = client(args)
    table = steps(db, args)
    failed = False
    for name in filter(None, args.steps.split(",")):
        started = time.monotonic()
        line = {"client": "python", "step": name}
        try:
            if name in deny:
                refused(exceptions.PermissionDenied, table[name], f"{name} is refused")
            else:
                table[name]()
            line["ok"] = True
        except Exception as error:  # noqa: BLE001 - every failure is reported, then the next step runs
            failed = True
            line["ok"] = False
            line["error"] = f"{type(error).__name__}: {error}"
            if not isinstance(error, Expectation):
                line["trace"] = traceback.format_exc(limit=4)
        line["ms"] = round((time.monotonic() - started) * 1000)
        print(json.dumps(line), flush=True)
    db.close()
    # Listener threads of the client may linger; the verdict is already out.
    sys.stdout.flush()
    os._exit(1 if failed else 0)


if __name__ == "__main__":
    main()
