"""The API's routes by concern; each module's `router(service)` builds its APIRouter."""
