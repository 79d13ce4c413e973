"""Completion webhooks: the callbackUrl judged, the ended job's document signed and POSTed.

A delivery row (core/models/webhooks.py) is made by the database in the transaction that ends
the job; `delivery.deliver` makes one attempt and says when to try again, the worker turns that
into a Celery message with a countdown, and the sweeper re-rings deliveries whose message was
lost. `urls` judges where a callback may go (at upload time and again at each attempt), and
`signing` holds the org's secret and the signature the receiver checks.
"""
