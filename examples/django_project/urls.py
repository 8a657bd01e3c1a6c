"""URLs of the example project: "/" public, "/profile" signed in, "/admin" for the Admin group."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("profile", views.profile, name="profile"),
    path("admin", views.admin, name="admin"),
]
