-- Change events name the city they belong to, so that a key limited to some cities can be given only their
-- events. A processor writes one event per type and city per round (each event's items are of that city only);
-- NULL is an event of no one city (events written before this migration), which only unlimited keys see.
ALTER TABLE events ADD COLUMN city text;
