-- The reference application's Item model (app label `api`), as Django
-- creates it on MySQL with BigAutoField ids. On MariaDB `json` is LONGTEXT
-- with a JSON_VALID check; on MySQL 8 it is the native JSON type.
CREATE TABLE IF NOT EXISTS `api_item` (
    `id` bigint AUTO_INCREMENT NOT NULL PRIMARY KEY,
    `name` varchar(200) NOT NULL,
    `description` longtext NOT NULL,
    `price` numeric(10, 2) NOT NULL,
    `quantity` integer UNSIGNED NOT NULL CHECK (`quantity` >= 0),
    `tags` json NOT NULL CHECK (JSON_VALID(`tags`)),
    `due` date NULL,
    `created_at` datetime(6) NOT NULL,
    `updated_at` datetime(6) NOT NULL,
    `owner_id` integer NOT NULL,
    CONSTRAINT `api_item_owner_id_fk_auth_user_id` FOREIGN KEY (`owner_id`) REFERENCES `auth_user` (`id`)
) CHARACTER SET utf8mb4;
