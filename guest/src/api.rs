//! The API views: users, tokens and items, answering as Django REST
//! Framework (with simplejwt) answers, on Django's own tables.

use burrow_sdk::db::{self, Date, Datetime, Decimal, FromRow, Json, Row};
use burrow_sdk::settings;
use burrow_sdk::web::{ApiError, Request, Response};
use serde_json::{Map, Value, json};

use crate::auth;

/// DRF's PAGE_SIZE unless the `[app]` setting `page_size` says otherwise.
const DEFAULT_PAGE_SIZE: u64 = 10;

// ------------------------------------------------------------------ users

/// `POST /api/users/` `{username, password, email?}` → 201.
pub fn register(req: &Request) -> Result<Response, ApiError> {
    let body: Value = req.json()?;
    let mut errors = Map::new();
    let username = required_string(&body, "username", 150, &mut errors);
    let password = required_string(&body, "password", 128, &mut errors);
    let email = match body.get("email") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.is_empty() || (s.contains('@') && s.len() <= 254) => s.clone(),
        Some(_) => {
            errors.insert("email".into(), json!(["Enter a valid email address."]));
            String::new()
        }
    };
    if let Some(u) = &username
        && !u
            .chars()
            .all(|c| c.is_alphanumeric() || "@.+-_".contains(c))
    {
        errors.insert(
            "username".into(),
            json!(["Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters."]),
        );
    }
    if let Some(p) = &password
        && p.chars().count() < 8
    {
        errors.insert(
            "password".into(),
            json!(["This password is too short. It must contain at least 8 characters."]),
        );
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(Value::Object(errors)));
    }
    let (username, password) = (username.unwrap(), password.unwrap());
    let hash = auth::make_password(&password);
    let now = now_datetime();
    let result = db::execute(
        "INSERT INTO auth_user (password, last_login, is_superuser, username, first_name, last_name, \
         email, is_staff, is_active, date_joined) VALUES (?, NULL, 0, ?, '', '', ?, 0, 1, ?)",
        &[&hash, &username, &email, &now],
    );
    match result {
        Ok(done) => Ok(Response::json(
            201,
            &json!({ "id": done.last_insert_id, "username": username, "email": email }),
        )),
        Err(e) if e.mysql_code() == Some(1062) => Err(ApiError::validation(
            json!({ "username": ["A user with that username already exists."] }),
        )),
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/users/me/`.
pub fn me(req: &Request) -> Result<Response, ApiError> {
    let user_id = auth::authenticate(req)?;
    let rows = db::query(
        "SELECT id, username, email, first_name, last_name, date_joined FROM auth_user WHERE id = ? AND is_active = 1",
        &[&user_id],
    )?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::unauthorized("User not found"))?;
    Ok(Response::json(
        200,
        &json!({
            "id": row.get::<i64>("id")?,
            "username": row.get::<String>("username")?,
            "email": row.get::<String>("email")?,
            "first_name": row.get::<String>("first_name")?,
            "last_name": row.get::<String>("last_name")?,
            "date_joined": iso(&row.get::<Datetime>("date_joined")?),
        }),
    ))
}

// ----------------------------------------------------------------- tokens

/// `POST /api/token/` `{username, password}` → `{access, refresh}`.
pub fn obtain_token(req: &Request) -> Result<Response, ApiError> {
    let body: Value = req.json()?;
    let mut errors = Map::new();
    let username = required_string(&body, "username", usize::MAX, &mut errors);
    let password = required_string(&body, "password", usize::MAX, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(Value::Object(errors)));
    }
    let rows = db::query(
        "SELECT id, password, is_active FROM auth_user WHERE username = ?",
        &[&username.unwrap()],
    )?;
    let wrong = || ApiError::unauthorized("No active account found with the given credentials");
    let row = rows.first().ok_or_else(wrong)?;
    let hash: String = row.get("password")?;
    if !row.get::<bool>("is_active")? || !auth::check_password(&password.unwrap(), &hash) {
        return Err(wrong());
    }
    let id: i64 = row.get("id")?;
    let now = auth::now_secs();
    Ok(Response::json(
        200,
        &json!({ "refresh": auth::issue("refresh", id, now)?, "access": auth::issue("access", id, now)? }),
    ))
}

/// `POST /api/token/refresh/` `{refresh}` → `{access}`.
pub fn refresh_token(req: &Request) -> Result<Response, ApiError> {
    let body: Value = req.json()?;
    let mut errors = Map::new();
    let token = required_string(&body, "refresh", usize::MAX, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(Value::Object(errors)));
    }
    let key =
        settings::secret_key().ok_or_else(|| ApiError::internal("DJANGO_SECRET_KEY is not set"))?;
    let claims = auth::verify(&token.unwrap(), "refresh", &key, auth::now_secs()).map_err(|e| {
        let detail = match e {
            auth::TokenError::WrongType => "Token has wrong type",
            _ => "Token is invalid or expired",
        };
        ApiError::new(401, json!({ "detail": detail, "code": "token_not_valid" }))
    })?;
    let id = auth::user_id(&claims).ok_or_else(|| {
        ApiError::unauthorized("Token contained no recognizable user identification")
    })?;
    Ok(Response::json(
        200,
        &json!({ "access": auth::issue("access", id, auth::now_secs())? }),
    ))
}

// ------------------------------------------------------------------ items

/// An `api_item` row.
struct Item {
    id: i64,
    owner_id: i64,
    name: String,
    description: String,
    price: Decimal,
    quantity: u32,
    tags: Json,
    due: Option<Date>,
    created_at: Datetime,
    updated_at: Datetime,
}

impl FromRow for Item {
    fn from_row(row: &Row<'_>) -> Result<Self, db::DbError> {
        Ok(Item {
            id: row.get("id")?,
            owner_id: row.get("owner_id")?,
            name: row.get("name")?,
            description: row.get("description")?,
            price: row.get("price")?,
            quantity: row.get("quantity")?,
            tags: row.get("tags")?,
            due: row.get("due")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
        })
    }
}

impl Item {
    /// As DRF's ModelSerializer renders it.
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "owner": self.owner_id,
            "name": self.name,
            "description": self.description,
            "price": self.price.0,
            "quantity": self.quantity,
            "tags": serde_json::from_str::<Value>(&self.tags.0).unwrap_or(Value::Null),
            "due": self.due.as_ref().map(date_text),
            "created_at": iso(&self.created_at),
            "updated_at": iso(&self.updated_at),
        })
    }
}

const ITEM_COLUMNS: &str =
    "id, owner_id, name, description, price, quantity, tags, due, created_at, updated_at";

/// `GET /api/items/?page=N`: the caller's items, paginated.
pub fn list_items(req: &Request) -> Result<Response, ApiError> {
    let user = auth::authenticate(req)?;
    let page_size = settings::get("page_size")
        .and_then(|s| s.parse().ok())
        .filter(|n: &u64| *n > 0)
        .unwrap_or(DEFAULT_PAGE_SIZE);
    let page: u64 = match req.query_value("page") {
        None => 1,
        Some(p) => p
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(invalid_page)?,
    };
    let count: u64 = db::query(
        "SELECT COUNT(*) AS n FROM api_item WHERE owner_id = ?",
        &[&user],
    )?
    .first()
    .map(|r| r.get("n"))
    .transpose()?
    .unwrap_or(0);
    let pages = count.div_ceil(page_size).max(1);
    if page > pages {
        return Err(invalid_page());
    }
    let rows = db::query(
        &format!(
            "SELECT {ITEM_COLUMNS} FROM api_item WHERE owner_id = ? ORDER BY id LIMIT ? OFFSET ?"
        ),
        &[&user, &page_size, &((page - 1) * page_size)],
    )?;
    let items: Vec<Item> = rows.to_vec()?;
    let link = |p: u64| -> Value {
        let mut pairs: Vec<(String, String)> = req
            .query()
            .into_iter()
            .filter(|(k, _)| k != "page")
            .collect();
        if p > 1 {
            pairs.push(("page".into(), p.to_string()));
        }
        let query: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        Value::String(req.absolute_url(&query.join("&")))
    };
    Ok(Response::json(
        200,
        &json!({
            "count": count,
            "next": if page < pages { link(page + 1) } else { Value::Null },
            "previous": if page > 1 { link(page - 1) } else { Value::Null },
            "results": items.iter().map(Item::to_json).collect::<Vec<_>>(),
        }),
    ))
}

/// `POST /api/items/`.
pub fn create_item(req: &Request) -> Result<Response, ApiError> {
    let user = auth::authenticate(req)?;
    let body: Value = req.json()?;
    let fields = validate_item(&body, None)?;
    let now = now_datetime();
    let done = db::execute(
        "INSERT INTO api_item (owner_id, name, description, price, quantity, tags, due, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            &user,
            &fields.name,
            &fields.description,
            &fields.price,
            &fields.quantity,
            &fields.tags,
            &fields.due,
            &now,
            &now,
        ],
    )?;
    let id = done
        .last_insert_id
        .ok_or_else(|| ApiError::internal("INSERT returned no id"))?;
    Ok(Response::json(201, &load_item(user, id as i64)?.to_json()))
}

/// `GET /api/items/{id}/`.
pub fn get_item(req: &Request) -> Result<Response, ApiError> {
    let user = auth::authenticate(req)?;
    Ok(Response::json(
        200,
        &load_item(user, item_id(req)?)?.to_json(),
    ))
}

/// `PUT` (every field) and `PATCH` (some fields) `/api/items/{id}/`.
pub fn update_item(req: &Request) -> Result<Response, ApiError> {
    let user = auth::authenticate(req)?;
    let id = item_id(req)?;
    let current = load_item(user, id)?;
    let body: Value = req.json()?;
    let partial = req.method == "PATCH";
    let fields = validate_item(&body, partial.then_some(&current))?;
    db::execute(
        "UPDATE api_item SET name = ?, description = ?, price = ?, quantity = ?, tags = ?, due = ?, updated_at = ? \
         WHERE id = ? AND owner_id = ?",
        &[
            &fields.name,
            &fields.description,
            &fields.price,
            &fields.quantity,
            &fields.tags,
            &fields.due,
            &now_datetime(),
            &id,
            &user,
        ],
    )?;
    Ok(Response::json(200, &load_item(user, id)?.to_json()))
}

/// `DELETE /api/items/{id}/` → 204.
pub fn delete_item(req: &Request) -> Result<Response, ApiError> {
    let user = auth::authenticate(req)?;
    let done = db::execute(
        "DELETE FROM api_item WHERE id = ? AND owner_id = ?",
        &[&item_id(req)?, &user],
    )?;
    if done.rows_affected == 0 {
        return Err(ApiError::not_found());
    }
    Ok(Response::no_content())
}

fn item_id(req: &Request) -> Result<i64, ApiError> {
    req.param("id").parse().map_err(|_| ApiError::not_found())
}

/// Another user's item is as absent as a missing one: 404.
fn load_item(user: i64, id: i64) -> Result<Item, ApiError> {
    let rows = db::query(
        &format!("SELECT {ITEM_COLUMNS} FROM api_item WHERE id = ? AND owner_id = ?"),
        &[&id, &user],
    )?;
    let row = rows.first().ok_or_else(ApiError::not_found)?;
    Ok(Item::from_row(&row)?)
}

struct ItemFields {
    name: String,
    description: String,
    price: Decimal,
    quantity: u32,
    tags: Json,
    due: Option<Date>,
}

/// DRF ModelSerializer validation for Item; `current` makes it partial.
fn validate_item(body: &Value, current: Option<&Item>) -> Result<ItemFields, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::validation(
            json!({ "non_field_errors": ["Invalid data. Expected a dictionary, but got list."] }),
        ));
    };
    let mut errors = Map::new();
    let missing = |name: &str, errors: &mut Map<String, Value>| {
        if current.is_none() {
            errors.insert(name.into(), json!(["This field is required."]));
        }
    };

    let name = match obj.get("name") {
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.insert("name".into(), json!(["This field may not be blank."]));
            None
        }
        Some(Value::String(s)) if s.chars().count() > 200 => {
            errors.insert(
                "name".into(),
                json!(["Ensure this field has no more than 200 characters."]),
            );
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) => {
            errors.insert("name".into(), json!(["This field may not be null."]));
            None
        }
        Some(_) => {
            errors.insert("name".into(), json!(["Not a valid string."]));
            None
        }
        None => {
            missing("name", &mut errors);
            None
        }
    };
    let description = match obj.get("description") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.insert("description".into(), json!(["Not a valid string."]));
            None
        }
        None => None,
    };
    let price = match obj.get("price") {
        Some(v) => match validate_price(v) {
            Ok(p) => Some(p),
            Err(m) => {
                errors.insert("price".into(), json!([m]));
                None
            }
        },
        None => {
            missing("price", &mut errors);
            None
        }
    };
    let quantity = match obj.get("quantity") {
        Some(v) => {
            let n = match v {
                Value::Number(n) => n
                    .as_i64()
                    .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            match n {
                None => {
                    errors.insert("quantity".into(), json!(["A valid integer is required."]));
                    None
                }
                Some(n) if n < 0 => {
                    errors.insert(
                        "quantity".into(),
                        json!(["Ensure this value is greater than or equal to 0."]),
                    );
                    None
                }
                Some(n) if n > i64::from(u32::MAX) => {
                    errors.insert(
                        "quantity".into(),
                        json!([format!(
                            "Ensure this value is less than or equal to {}.",
                            u32::MAX
                        )]),
                    );
                    None
                }
                Some(n) => Some(n as u32),
            }
        }
        None => {
            missing("quantity", &mut errors);
            None
        }
    };
    let tags = obj.get("tags").map(|v| Json(v.to_string()));
    let due = match obj.get("due") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => match parse_date(s) {
            Some(d) => Some(Some(d)),
            None => {
                errors.insert(
                    "due".into(),
                    json!(["Date has wrong format. Use one of these formats instead: YYYY-MM-DD."]),
                );
                None
            }
        },
        Some(_) => {
            errors.insert(
                "due".into(),
                json!(["Date has wrong format. Use one of these formats instead: YYYY-MM-DD."]),
            );
            None
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(Value::Object(errors)));
    }
    Ok(ItemFields {
        name: name
            .or_else(|| current.map(|c| c.name.clone()))
            .unwrap_or_default(),
        description: description
            .or_else(|| current.map(|c| c.description.clone()))
            .unwrap_or_default(),
        price: price
            .or_else(|| current.map(|c| c.price.clone()))
            .unwrap_or(Decimal::new("0.00")),
        quantity: quantity
            .or_else(|| current.map(|c| c.quantity))
            .unwrap_or(0),
        tags: tags
            .or_else(|| current.map(|c| c.tags.clone()))
            .unwrap_or(Json("[]".into())),
        due: due.unwrap_or_else(|| current.and_then(|c| c.due)),
    })
}

/// DecimalField(max_digits=10, decimal_places=2), with DRF's messages.
fn validate_price(v: &Value) -> Result<Decimal, String> {
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return Err("A valid number is required.".into()),
    };
    let unsigned = text.strip_prefix('-').unwrap_or(&text);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(int) || (int.is_empty() && digits(frac))) || (!frac.is_empty() && !digits(frac)) {
        return Err("A valid number is required.".into());
    }
    let int_digits = int.trim_start_matches('0').len();
    let frac_digits = frac.trim_end_matches('0').len();
    if frac_digits > 2 {
        return Err("Ensure that there are no more than 2 decimal places.".into());
    }
    if int_digits + frac_digits > 10 {
        return Err("Ensure that there are no more than 10 digits in total.".into());
    }
    if int_digits > 8 {
        return Err("Ensure that there are no more than 8 digits before the decimal point.".into());
    }
    Ok(Decimal::new(text))
}

fn invalid_page() -> ApiError {
    ApiError::new(404, json!({ "detail": "Invalid page." }))
}

fn required_string(
    body: &Value,
    field: &str,
    max: usize,
    errors: &mut Map<String, Value>,
) -> Option<String> {
    match body.get(field) {
        None => {
            errors.insert(field.into(), json!(["This field is required."]));
            None
        }
        Some(Value::String(s)) if s.is_empty() => {
            errors.insert(field.into(), json!(["This field may not be blank."]));
            None
        }
        Some(Value::String(s)) if s.chars().count() > max => {
            errors.insert(
                field.into(),
                json!([format!(
                    "Ensure this field has no more than {max} characters."
                )]),
            );
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.insert(field.into(), json!(["Not a valid string."]));
            None
        }
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ------------------------------------------------------------------ time

/// Now, in UTC, with microseconds.
pub fn now_datetime() -> Datetime {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    Datetime {
        date: Date {
            year: year as u16,
            month,
            day,
        },
        hour: (rem / 3600) as u8,
        minute: (rem % 3600 / 60) as u8,
        second: (rem % 60) as u8,
        microsecond: since.subsec_micros(),
    }
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn date_text(d: &Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
}

/// As DRF renders a UTC datetime: ISO 8601 with `Z`, microseconds when
/// there are any (Python's `isoformat`).
pub fn iso(d: &Datetime) -> String {
    let base = format!(
        "{}T{:02}:{:02}:{:02}",
        date_text(&d.date),
        d.hour,
        d.minute,
        d.second
    );
    if d.microsecond == 0 {
        format!("{base}Z")
    } else {
        format!("{base}.{:06}Z", d.microsecond)
    }
}

fn parse_date(s: &str) -> Option<Date> {
    let mut p = s.split('-');
    let (y, m, d) = (p.next()?, p.next()?, p.next()?);
    if p.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (year, month, day): (u16, u8, u8) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if year == 0 || month == 0 || month > 12 || day == 0 || day > days[usize::from(month - 1)] {
        return None;
    }
    Some(Date { year, month, day })
}
