"""Fidelity check of a BigQuery emulator against the official Python client.

Usage: python fidelity_check.py http://127.0.0.1:PORT [PROJECT_ID]

Needs google-cloud-bigquery (measured with 3.47.0) in the running interpreter; it does not need
the emulator's venv. Uses anonymous credentials and client_options.api_endpoint only (no
BIGQUERY_EMULATOR_HOST). Prints one yes/no line per check, with details, and exits 0 when all
checks pass. Every run works in a fresh dataset and deletes it at the end.
"""

from __future__ import annotations

import decimal
import signal
import sys
import time
import traceback
import uuid

from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

RESULTS: list[tuple[str, bool, str]] = []
CHECK_TIMEOUT = 30  # seconds per check: the client retries 5xx/connection errors for minutes


class CheckTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise CheckTimeout(f"no answer within {CHECK_TIMEOUT}s (client kept retrying or server hung)")


def check(name: str):
    def wrap(fn):
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(CHECK_TIMEOUT)
        try:
            ok, detail = fn()
        except Exception as exc:  # noqa: BLE001 - a failing check is a result, not a crash
            ok, detail = False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            if "-v" in sys.argv:
                traceback.print_exc()
        finally:
            signal.alarm(0)
        RESULTS.append((name, bool(ok), detail))
        return fn

    return wrap


def main() -> int:
    endpoint = sys.argv[1]
    project = sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith("-") else "quotestream-local"
    client = bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoint},
    )
    ds_id = f"fidelity_{uuid.uuid4().hex[:8]}"
    ds_ref = f"{project}.{ds_id}"
    tbl = f"{ds_ref}.quotes"

    def count(table: str, where: str = "TRUE") -> int:
        rows = list(client.query_and_wait(f"SELECT COUNT(*) AS n FROM `{table}` WHERE {where}"))
        return rows[0]["n"]

    @check("first answer (list_datasets)")
    def _():
        t0 = time.monotonic()
        list(client.list_datasets())
        return True, f"{(time.monotonic() - t0) * 1000:.0f} ms"

    @check("create dataset (exists_ok)")
    def _():
        client.create_dataset(ds_ref)
        client.create_dataset(ds_ref, exists_ok=True)
        return client.get_dataset(ds_ref).dataset_id == ds_id, "created, second create with exists_ok=True ok"

    schema = [
        bigquery.SchemaField("symbol", "STRING", mode="REQUIRED"),
        bigquery.SchemaField("ts", "TIMESTAMP", mode="REQUIRED"),
        bigquery.SchemaField("price", "NUMERIC"),
        bigquery.SchemaField("volume", "INT64"),
        bigquery.SchemaField(
            "trades",
            "RECORD",
            mode="REPEATED",
            fields=[
                bigquery.SchemaField("px", "NUMERIC"),
                bigquery.SchemaField("qty", "INT64"),
            ],
        ),
        bigquery.SchemaField("venue", "STRING", mode="NULLABLE"),
    ]

    @check("create table (DAY partition on TIMESTAMP, clustering, NUMERIC, REPEATED RECORD)")
    def _():
        t = bigquery.Table(tbl, schema=schema)
        t.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field="ts")
        t.clustering_fields = ["symbol"]
        client.create_table(t)
        return True, "created"

    @check("get_table reports partitioning/clustering/schema")
    def _():
        t = client.get_table(tbl)
        tp = t.time_partitioning
        trades = next(f for f in t.schema if f.name == "trades")
        price = next(f for f in t.schema if f.name == "price")
        ok = (
            tp is not None and tp.type_ == "DAY" and tp.field == "ts"
            and t.clustering_fields == ["symbol"]
            and trades.mode == "REPEATED" and trades.field_type in ("RECORD", "STRUCT")
            and [f.name for f in trades.fields] == ["px", "qty"]
            and price.field_type in ("NUMERIC",)
        )
        return ok, (
            f"partitioning={tp.type_ if tp else None}/{tp.field if tp else None} "
            f"clustering={t.clustering_fields} trades={trades.mode}/{trades.field_type} price={price.field_type}"
        )

    @check("update_table adds a NULLABLE column (then usable by insert + query)")
    def _():
        evolve = f"{ds_ref}.evolve"
        client.create_table(bigquery.Table(evolve, schema=schema[:2]))
        t = client.get_table(evolve)
        t.schema = list(t.schema) + [bigquery.SchemaField("note", "STRING", mode="NULLABLE")]
        client.update_table(t, ["schema"])
        names = [f.name for f in client.get_table(evolve).schema]
        errors = client.insert_rows_json(
            evolve, [{"symbol": "E", "ts": "2026-11-01T00:00:00Z", "note": "new column"}])
        got = [r["note"] for r in client.query_and_wait(f"SELECT note FROM `{evolve}`")]
        return names[-1] == "note" and not errors and got == ["new column"], (
            f"schema now {names}; insert errors={errors}; SELECT note -> {got}")

    row = {
        "symbol": "AAA", "ts": "2026-11-01T10:00:00Z", "price": "12.3456789",
        "volume": 100, "trades": [{"px": "12.34", "qty": 10}, {"px": "12.35", "qty": 90}],
        "venue": "X",
    }

    @check("insert_rows_json + nested/NUMERIC values round-trip")
    def _():
        errors = client.insert_rows_json(tbl, [row], row_ids=["r-1"])
        if errors:
            return False, f"errors={errors}"
        got = list(client.query_and_wait(f"SELECT * FROM `{tbl}` WHERE symbol = 'AAA'"))
        r = got[0]
        ok = (
            len(got) == 1 and r["price"] == decimal.Decimal("12.3456789")
            and len(r["trades"]) == 2 and r["trades"][1]["qty"] == 90
            and r["trades"][0]["px"] == decimal.Decimal("12.34")
        )
        return ok, f"rows={len(got)} price={r['price']!r} trades={r['trades']}"

    @check("insert_rows_json insertId dedup (same row_id again -> still one row)")
    def _():
        e1 = client.insert_rows_json(tbl, [row], row_ids=["r-1"])
        e2 = client.insert_rows_json(tbl, [row, row], row_ids=["r-1", "r-1"])
        n = count(tbl, "symbol = 'AAA'")
        return n == 1 and not e1 and not e2, f"AAA rows after 4 inserts with row_id r-1: {n}"

    good1 = {"symbol": "GD1", "ts": "2026-11-01T11:00:00Z", "price": "1.5"}
    bad_num = {"symbol": "BAD", "ts": "2026-11-01T11:00:00Z", "price": "not-a-number"}
    good2 = {"symbol": "GD2", "ts": "2026-11-02T11:00:00Z", "price": "2"}
    bad_req = {"ts": "2026-11-01T11:00:00Z", "price": "3"}  # missing REQUIRED symbol

    def bad_rows(skip: bool, tag: str):
        rows = [dict(good1, symbol=good1["symbol"] + tag), bad_num, dict(good2, symbol=good2["symbol"] + tag), bad_req]
        errors = client.insert_rows_json(
            tbl, rows, row_ids=[f"{tag}-{i}" for i in range(4)], skip_invalid_rows=skip
        )
        by_index = {e["index"]: [x.get("reason") for x in e["errors"]] for e in errors}
        landed = count(tbl, f"symbol IN ('GD1{tag}', 'GD2{tag}')")
        return by_index, landed

    @check("insert_rows_json bad rows, skip_invalid_rows=True: per-row insertErrors, good rows land")
    def _():
        by_index, landed = bad_rows(True, "s")
        ok = set(by_index) == {1, 3} and landed == 2
        return ok, f"insertErrors by row index={by_index}; good rows landed={landed}/2"

    @check("insert_rows_json bad rows, default (skip_invalid_rows=False): BigQuery semantics = none land, good rows 'stopped'")
    def _():
        by_index, landed = bad_rows(False, "n")
        real_bq = {1, 3} <= set(by_index) and landed == 0
        return real_bq, f"insertErrors by row index={by_index}; good rows landed={landed}/2"

    @check("query with ScalarQueryParameter (STRING, NUMERIC, TIMESTAMP)")
    def _():
        cfg = bigquery.QueryJobConfig(query_parameters=[
            bigquery.ScalarQueryParameter("sym", "STRING", "AAA"),
            bigquery.ScalarQueryParameter("minp", "NUMERIC", decimal.Decimal("10")),
            bigquery.ScalarQueryParameter("since", "TIMESTAMP", "2026-11-01T00:00:00Z"),
        ])
        got = list(client.query_and_wait(
            f"SELECT symbol, price FROM `{tbl}` WHERE symbol = @sym AND price > @minp AND ts >= @since",
            job_config=cfg,
        ))
        return len(got) == 1 and got[0]["symbol"] == "AAA", f"rows={[dict(r) for r in got]}"

    @check("MERGE statement (update matched + insert not matched)")
    def _():
        job = client.query(f"""
            MERGE `{tbl}` T
            USING (SELECT 'AAA' AS symbol, TIMESTAMP '2026-11-01 10:00:00+00' AS ts, NUMERIC '13' AS price
                   UNION ALL
                   SELECT 'MRG', TIMESTAMP '2026-11-03 10:00:00+00', NUMERIC '7') S
            ON T.symbol = S.symbol AND T.ts = S.ts
            WHEN MATCHED THEN UPDATE SET price = S.price
            WHEN NOT MATCHED THEN INSERT (symbol, ts, price) VALUES (S.symbol, S.ts, S.price)
        """)
        job.result()
        got = {r["symbol"]: r["price"] for r in client.query_and_wait(
            f"SELECT symbol, price FROM `{tbl}` WHERE symbol IN ('AAA', 'MRG')")}
        ok = got == {"AAA": decimal.Decimal("13"), "MRG": decimal.Decimal("7")}
        return ok, f"after MERGE: {got}; num_dml_affected_rows={job.num_dml_affected_rows}"

    @check("INSERT ... SELECT ... WHERE NOT EXISTS (idempotent on rerun)")
    def _():
        sql = f"""
            INSERT INTO `{tbl}` (symbol, ts, price)
            SELECT s.symbol, s.ts, s.price FROM
              (SELECT 'NEX' AS symbol, TIMESTAMP '2026-11-04 10:00:00+00' AS ts, NUMERIC '5.5' AS price) s
            WHERE NOT EXISTS (SELECT 1 FROM `{tbl}` t WHERE t.symbol = s.symbol AND t.ts = s.ts)
        """
        a = client.query(sql); a.result()
        b = client.query(sql); b.result()
        n = count(tbl, "symbol = 'NEX'")
        return n == 1, f"rows after 2 runs: {n}; affected rows: {a.num_dml_affected_rows}, {b.num_dml_affected_rows}"

    @check("load_table_from_json (append, into partitioned table)")
    def _():
        rows = [
            {"symbol": "LD1", "ts": "2026-11-05T09:00:00Z", "price": "1.25",
             "trades": [{"px": "1.25", "qty": 3}]},
            {"symbol": "LD2", "ts": "2026-11-05 09:30:00+00:00", "price": "2.5", "trades": []},
        ]
        cfg = bigquery.LoadJobConfig(write_disposition="WRITE_APPEND", schema=client.get_table(tbl).schema)
        job = client.load_table_from_json(rows, tbl, job_config=cfg)
        job.result()
        n = count(tbl, "symbol LIKE 'LD%'")
        return n == 2 and job.output_rows == 2, f"loaded rows={n}, job.output_rows={job.output_rows}"

    @check("partition pseudo-column / filter on partition (_PARTITIONTIME or DATE(ts))")
    def _():
        got = list(client.query_and_wait(
            f"SELECT DATE(ts) AS d, COUNT(*) AS n FROM `{tbl}` WHERE DATE(ts) = '2026-11-05' GROUP BY d"))
        return len(got) == 1 and got[0]["n"] == 2, f"{[dict(r) for r in got]}"

    @check("delete_table / delete_dataset (delete_contents)")
    def _():
        client.delete_table(tbl)
        client.delete_table(tbl, not_found_ok=True)
        try:
            client.get_table(tbl)
            return False, "table still there"
        except Exception as exc:  # noqa: BLE001
            if "404" not in str(exc) and "Not found" not in str(exc):
                raise
        client.create_table(bigquery.Table(f"{ds_ref}.left_over", schema=schema[:2]))
        client.delete_dataset(ds_ref, delete_contents=True)
        client.delete_dataset(ds_ref, not_found_ok=True)
        try:
            client.get_dataset(ds_ref)
            return False, "dataset still there"
        except Exception as exc:  # noqa: BLE001
            if "404" not in str(exc) and "Not found" not in str(exc):
                raise
        return True, "both 404 afterwards; not_found_ok works"

    width = max(len(n) for n, _, _ in RESULTS)
    print(f"endpoint={endpoint} project={project} google-cloud-bigquery={bigquery.__version__}")
    for name, ok, detail in RESULTS:
        print(f"{'yes' if ok else 'NO ':3}  {name:<{width}}  {detail}")
    passed = sum(ok for _, ok, _ in RESULTS)
    print(f"{passed}/{len(RESULTS)} passed")
    # cleanup if a check failed half-way
    signal.alarm(CHECK_TIMEOUT)
    try:
        client.delete_dataset(ds_ref, delete_contents=True, not_found_ok=True)
    except Exception:  # noqa: BLE001
        pass
    signal.alarm(0)
    return 0 if passed == len(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
