"""The IBM Cloudant Python SDK (ibmcloudant) with its defaults (gzip-compressed request bodies)
against one database: documents, bulk calls, attachments, _all_docs, _changes and the one-off
changes follower. Prints one JSON object of what it saw; the conformance scenario
19-cloudant-python.mjs checks it.

Environment: CG_URL (server URL), CG_DB (database), and CG_TOKEN (a bearer token),
CG_USER/CG_PASSWORD (basic credentials) or neither.
"""
import json
import os
import sys
import time

from ibm_cloud_sdk_core import ApiException
from ibm_cloud_sdk_core.authenticators import (
    BasicAuthenticator,
    BearerTokenAuthenticator,
    NoAuthAuthenticator,
)
from ibmcloudant.cloudant_v1 import BulkDocs, CloudantV1, Document
from ibmcloudant.features.changes_follower import ChangesFollower


def main():
    if os.environ.get("CG_TOKEN"):
        auth = BearerTokenAuthenticator(os.environ["CG_TOKEN"])
    elif os.environ.get("CG_USER"):
        auth = BasicAuthenticator(os.environ["CG_USER"], os.environ["CG_PASSWORD"])
    else:
        auth = NoAuthAuthenticator()
    service = CloudantV1(authenticator=auth)
    service.set_service_url(os.environ["CG_URL"])
    db = os.environ["CG_DB"]
    out = {"gzip": service.get_enable_gzip_compression()}

    created = service.post_document(db=db, document=Document(_id="a", v=1)).get_result()
    out["post_document"] = created["ok"]
    doc = service.get_document(db=db, doc_id="a").get_result()
    out["get_document_v"] = doc["v"]
    doc["v"] = 2
    out["put_document_rev"] = service.put_document(db=db, doc_id="a", document=doc).get_result()["rev"][:2]
    try:
        service.put_document(db=db, doc_id="a", document={"_rev": created["rev"], "v": 3})
        out["conflict"] = None
    except ApiException as e:
        out["conflict"] = e.code

    docs = [Document(_id=f"b-{i:02d}", i=i) for i in range(30)]
    bulk = service.post_bulk_docs(db=db, bulk_docs=BulkDocs(docs=docs)).get_result()
    out["bulk_ok"] = sum(1 for r in bulk if r.get("ok"))

    att = service.put_attachment(
        db=db, doc_id="att", attachment_name="x.bin",
        attachment=b"\x00\x01binary\r\n--x", content_type="application/octet-stream",
    ).get_result()
    out["put_attachment"] = att["ok"]
    out["get_attachment"] = service.get_attachment(db=db, doc_id="att", attachment_name="x.bin").get_result().content.hex()

    rows = service.post_all_docs(db=db, include_docs=True, start_key="b-", end_key="b-\uffff").get_result()["rows"]
    out["all_docs_rows"] = len(rows)
    out["all_docs_doc_i"] = rows[5]["doc"]["i"]
    keys = service.post_all_docs(db=db, keys=["a", "nothing"]).get_result()["rows"]
    out["keys_missing"] = keys[1].get("error")
    changes = service.post_changes(db=db).get_result()
    out["changes_rows"] = len(changes["results"])
    out["changes_pending"] = changes.get("pending")

    # The one-off follower ends when nothing is pending; count its requests.
    sent = {"n": 0}
    session = service.get_http_client()
    original = session.request

    def counting(*args, **kwargs):
        sent["n"] += 1
        return original(*args, **kwargs)

    session.request = counting
    seen = set()
    for change in ChangesFollower(service=service, db=db).start_one_off():
        seen.add(change.id)
    session.request = original
    out["follower_ids"] = len(seen)
    out["follower_requests"] = sent["n"]

    info = service.get_database_information(db=db).get_result()
    out["doc_count"] = info["doc_count"]
    deleted = service.delete_document(db=db, doc_id="b-00", rev=bulk[0]["rev"]).get_result()
    out["delete_ok"] = deleted["ok"]
    # A CouchDB cluster counts from one shard copy, which may not have the deletion yet:
    # the count is read again, for up to 5 s, until it moves.
    for _ in range(50):
        after = service.get_database_information(db=db).get_result()["doc_count"]
        if after != info["doc_count"]:
            break
        time.sleep(0.1)
    out["doc_count_after"] = after
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
