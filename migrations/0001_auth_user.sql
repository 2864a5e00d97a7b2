-- Django's auth_user table, exactly as `manage.py migrate` creates it on
-- MySQL (django.contrib.auth, AutoField ids). IF NOT EXISTS makes this a
-- no-op on a database where Django already created it.
CREATE TABLE IF NOT EXISTS `auth_user` (
    `id` integer AUTO_INCREMENT NOT NULL PRIMARY KEY,
    `password` varchar(128) NOT NULL,
    `last_login` datetime(6) NULL,
    `is_superuser` bool NOT NULL,
    `username` varchar(150) NOT NULL UNIQUE,
    `first_name` varchar(150) NOT NULL,
    `last_name` varchar(150) NOT NULL,
    `email` varchar(254) NOT NULL,
    `is_staff` bool NOT NULL,
    `is_active` bool NOT NULL,
    `date_joined` datetime(6) NOT NULL
) CHARACTER SET utf8mb4;
