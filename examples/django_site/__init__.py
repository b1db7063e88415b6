"""A minimal Django project served over ASGI with ConsentMiddleware around Django's application.

Run it with ``uvicorn examples.django_site.asgi:application``. See ``asgi.py``.
"""
