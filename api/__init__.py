"""The HTTP surface: a REST API, a web page and Prometheus metrics (``arxiv-stream serve``).

    app.py      the FastAPI app: settings, one engine, the model holder, errors, auth, metrics
    routes.py   the endpoints (JSON), the page's HTML
    predict.py  request batching over the current model (one forward pass for many callers)
    schemas.py  request and response bodies
    static/     the page: plain HTML, CSS and JavaScript, no build step, no CDN

Keeps no state of its own: PostgreSQL is the source of truth, the model is the promoted one
(swapped on promotion like the worker's). May import core, db, models, stream.model_holder.
"""
