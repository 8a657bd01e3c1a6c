"""The example's views: ordinary Django, reading the ordinary Django user.

`request.user` is the Django user that `SAMLRemoteUserBackend` created or
updated from the SAML sign-in; its groups are the mapped SAML roles. The raw
`SAMLUser` (every attribute the IdP sent) is in `request.META["saml.user"]`.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

ADMIN_GROUP = "Admin"


def _roles(request: HttpRequest) -> list[str]:
    return sorted(request.user.groups.values_list("name", flat=True))


@never_cache
def home(request: HttpRequest) -> HttpResponse:
    context = {"title": "Home", "saml_user": request.META.get("saml.user")}
    return render(request, "django_project/home.html", context)


@never_cache
@login_required  # the middleware protects /profile already; this keeps the view safe
def profile(request: HttpRequest) -> HttpResponse:
    saml_user = request.META.get("saml.user")
    attributes = sorted(saml_user.attributes.items()) if saml_user is not None else []
    context = {
        "title": "Profile",
        "saml_user": saml_user,
        "roles": _roles(request),
        "attributes": [(name, ", ".join(values)) for name, values in attributes],
    }
    return render(request, "django_project/profile.html", context)


@never_cache
@login_required
def admin(request: HttpRequest) -> HttpResponse:
    roles = _roles(request)
    if ADMIN_GROUP not in roles:
        raise PermissionDenied("the Admin group is needed")
    return render(request, "django_project/admin.html", {"title": "Admin", "roles": roles})
