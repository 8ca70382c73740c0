"""quotestream: the hexagonal core of the currency-quote pipeline.

The package doubles as the Airflow plugins-folder package on Cloud Composer, so importing it
must stay cheap: nothing here imports Beam, google-cloud or pandas at module level.
"""
