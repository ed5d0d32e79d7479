"""The business's inbox: its own Cloud Run service (inbox_fn), a Flask app served as plain HTML/CSS/JS.

``app`` builds the app from ``InboxDeps`` (``deps``): the pages and sign-in
(``signin``), the read side (``conversations``), the operators' view
(``operations``), and the sessions (``session``). What may be shown is
decided by shared/domain/staff.py and shared/domain/inbox.py.
"""
