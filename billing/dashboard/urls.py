"""Included by marketplace.urls under admin/dashboard/ (by module name: marketplace may not
import billing)."""

from django.contrib import admin
from django.urls import path

from billing.dashboard.views import dashboard

urlpatterns = [path("", admin.site.admin_view(dashboard), name="admin-dashboard")]
