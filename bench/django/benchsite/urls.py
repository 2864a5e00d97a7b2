from django.urls import include, path
from rest_framework.routers import DefaultRouter
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from api import views

router = DefaultRouter()
router.register("items", views.ItemViewSet, basename="item")

urlpatterns = [
    path("hello", views.hello),
    path("item/<int:pk>", views.bench_item),
    path("api/token/", TokenObtainPairView.as_view()),
    path("api/token/refresh/", TokenRefreshView.as_view()),
    path("api/health/", views.health),
    path("api/", include(router.urls)),
]
