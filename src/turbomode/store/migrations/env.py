"""Alembic environment of the signals store, run programmatically by ``SignalStore.migrate``.

``SignalStore`` hands over its open connection in ``config.attributes["connection"]`` so the
migration runs inside its transaction (and its PostgreSQL ``search_path``); the URL path is
kept for ``alembic -x url=... upgrade head`` from a shell.
"""

from __future__ import annotations

from alembic import context

from turbomode.store import VERSION_TABLE, SignalStore, metadata

config = context.config


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies tables
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_offline() -> None:
    _configure(url=context.get_x_argument(as_dictionary=True).get("url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the signals store URL: alembic -x url=sqlite:///... upgrade head")
    store = SignalStore(url)  # its engine sets SQLite's pragmas and transaction handling
    with store.engine.begin() as conn:
        _configure(connection=conn)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
