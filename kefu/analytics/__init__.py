"""Analytics: event capture (Rasa event broker + desk tables), KPIs, reports and knowledge-gap mining.

Modules, one concern each (definitions of every KPI: docs/analytics.md):

- :mod:`kefu.analytics.store` – analytics tables (normalized events, quarantine, ingest cursors, follow-ups)
- :mod:`kefu.analytics.normalize` – validation and PII masking of one Rasa event
- :mod:`kefu.analytics.ingest` – Rasa SQL event broker reader and RabbitMQ consumer
- :mod:`kefu.analytics.desk_events` – desk / business events derived from handoffs, ratings, tickets, …
- :mod:`kefu.analytics.kpis` – conversations and KPIs (pure functions) over the store
- :mod:`kefu.analytics.report` – stdout tables, PNG charts and one self-contained HTML file
- :mod:`kefu.analytics.gaps` – clustering of unanswered questions and YAML drafts for designers
"""
