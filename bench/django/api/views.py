from django.db import connection
from django.http import HttpResponse, JsonResponse
from rest_framework import permissions, viewsets

from .models import BenchItem, Item
from .serializers import ItemSerializer


def hello(request):
    return HttpResponse(b"hello")


def bench_item(request, pk):
    """The db-read scenario: one `bench_items` row by primary key → JSON."""
    try:
        row = BenchItem.objects.values("id", "name", "price", "quantity").get(pk=pk)
    except BenchItem.DoesNotExist:
        return JsonResponse({"detail": "Not found."}, status=404)
    return JsonResponse(row)


def health(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok", "database": "ok"})


class ItemViewSet(viewsets.ModelViewSet):
    """`/api/items/`: the caller's items, as the reference application."""

    serializer_class = ItemSerializer
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self):
        return Item.objects.filter(owner=self.request.user)

    def perform_create(self, serializer):
        serializer.save(owner=self.request.user)
