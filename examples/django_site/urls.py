"""The project's routes: one page and the decision as JSON."""

from __future__ import annotations

from django.urls import path  # type: ignore[import-untyped]

from examples.django_site import views

urlpatterns = [
    path("", views.home),
    path("consent.json", views.consent_json),
]
