"""The Prometheus exporter: what memtop knows, as metrics a fleet's Prometheus can scrape.

``view`` turns a monitor's state (or a running server's ledger) into plain figures; ``collector``
renders those as fresh metric families on every scrape; ``runner`` serves them over HTTP and to
node_exporter's textfile directory.
"""
