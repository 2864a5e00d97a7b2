from rest_framework import serializers

from .models import Item


class ItemSerializer(serializers.ModelSerializer):
    owner = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Item
        fields = ["id", "owner", "name", "description", "price", "quantity", "tags", "due",
                  "created_at", "updated_at"]
