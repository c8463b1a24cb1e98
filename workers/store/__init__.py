"""SQLite store shared by the scanner workers (writers) and the API (reader).

    from workers.store import StoreWriter, StoreReader, StoreError

    writer = StoreWriter(state_dir)                       # one per worker
    writer.replace_snapshot("watchlist", dataframe)       # one transaction
    writer.record_whale_flows(rows, retention_days=1)     # de-duplicated history

    reader = StoreReader(state_dir)                       # one per API process
    reader.watchlist(order_by="volume", limit=20)

The database is `<state_dir>/market_data.db` (WAL mode, schema in schema.py).
"""

from .errors import RowError, SchemaTooNewError, StoreError
from .reader import DATASET_NAMES, StoreReader
from .rows import DATASETS, SNAPSHOT_DATASETS
from .schema import DB_FILENAME, SCHEMA_VERSION
from .writer import StoreWriter, WhaleFlowsResult, utc_now

__all__ = [
    "DATASETS", "DATASET_NAMES", "DB_FILENAME", "RowError", "SCHEMA_VERSION",
    "SNAPSHOT_DATASETS", "SchemaTooNewError", "StoreError", "StoreReader", "StoreWriter",
    "WhaleFlowsResult", "utc_now",
]
