"""The use cases over the ports: provision, stream, backfill, check, account, relay, tear down."""
