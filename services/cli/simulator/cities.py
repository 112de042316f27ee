"""A small built-in table of real cities: where simulated users live."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class City:
    name: str
    country: str  # ISO 3166-1 alpha-2
    latitude: float
    longitude: float
    timezone: str  # IANA
    locale: str  # BCP 47
    dial_code: str  # E.164 country calling code
    weight: float  # relative share of users


CITIES: tuple[City, ...] = (
    City("New York", "US", 40.7128, -74.0060, "America/New_York", "en-US", "1", 9),
    City("Los Angeles", "US", 34.0522, -118.2437, "America/Los_Angeles", "en-US", "1", 6),
    City("Chicago", "US", 41.8781, -87.6298, "America/Chicago", "en-US", "1", 4),
    City("Toronto", "CA", 43.6532, -79.3832, "America/Toronto", "en-CA", "1", 3),
    City("Mexico City", "MX", 19.4326, -99.1332, "America/Mexico_City", "es-MX", "52", 4),
    City("São Paulo", "BR", -23.5505, -46.6333, "America/Sao_Paulo", "pt-BR", "55", 5),
    City(
        "Buenos Aires", "AR", -34.6037, -58.3816, "America/Argentina/Buenos_Aires", "es-AR", "54", 2
    ),
    City("London", "GB", 51.5074, -0.1278, "Europe/London", "en-GB", "44", 7),
    City("Berlin", "DE", 52.5200, 13.4050, "Europe/Berlin", "de-DE", "49", 5),
    City("Munich", "DE", 48.1351, 11.5820, "Europe/Berlin", "de-DE", "49", 2),
    City("Paris", "FR", 48.8566, 2.3522, "Europe/Paris", "fr-FR", "33", 5),
    City("Madrid", "ES", 40.4168, -3.7038, "Europe/Madrid", "es-ES", "34", 3),
    City("Amsterdam", "NL", 52.3676, 4.9041, "Europe/Amsterdam", "nl-NL", "31", 2),
    City("Stockholm", "SE", 59.3293, 18.0686, "Europe/Stockholm", "sv-SE", "46", 1),
    City("Lagos", "NG", 6.5244, 3.3792, "Africa/Lagos", "en-NG", "234", 3),
    City("Nairobi", "KE", -1.2921, 36.8219, "Africa/Nairobi", "en-KE", "254", 2),
    City("Dubai", "AE", 25.2048, 55.2708, "Asia/Dubai", "ar-AE", "971", 2),
    City("Mumbai", "IN", 19.0760, 72.8777, "Asia/Kolkata", "hi-IN", "91", 6),
    City("Bengaluru", "IN", 12.9716, 77.5946, "Asia/Kolkata", "en-IN", "91", 4),
    City("Singapore", "SG", 1.3521, 103.8198, "Asia/Singapore", "en-SG", "65", 2),
    City("Tokyo", "JP", 35.6762, 139.6503, "Asia/Tokyo", "ja-JP", "81", 5),
    City("Seoul", "KR", 37.5665, 126.9780, "Asia/Seoul", "ko-KR", "82", 3),
    City("Sydney", "AU", -33.8688, 151.2093, "Australia/Sydney", "en-AU", "61", 3),
)
