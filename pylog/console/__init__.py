"""The web console (`pylog console`, or a broker's pylog.console.listener).

    cluster_data.py  what the pages show and change, through pylog's Kafka client
    charts.py        the lag chart, an SVG drawn on the server
    app.py           the Starlette application: routes, forms, error pages
    server.py        uvicorn on a bound socket, in the foreground or on a thread
    cli.py           `pylog console`
    templates/, static/  the pages (Jinja2) and their stylesheet

Needs the `console` extra (starlette, jinja2, uvicorn, python-multipart).
"""
