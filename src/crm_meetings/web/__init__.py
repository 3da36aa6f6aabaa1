"""HTTP API, record-page panel and admin page."""
