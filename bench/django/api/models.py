from django.conf import settings
from django.db import models


class Item(models.Model):
    """The reference application's model; Django's table `api_item`, as
    burrow's migrations/0002_api_item.sql creates it."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="items")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    quantity = models.PositiveIntegerField()
    tags = models.JSONField(default=list)
    due = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]


class BenchItem(models.Model):
    """bench/run's `bench_items` table (the db-read scenario)."""

    id = models.PositiveBigIntegerField(primary_key=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    quantity = models.PositiveIntegerField()

    class Meta:
        managed = False
        db_table = "bench_items"
