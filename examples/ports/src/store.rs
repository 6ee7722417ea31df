//! Where the ports service keeps ports: SQLite (embedded, the default) or
//! PostgreSQL, through sqlx's `Any` driver so one code path serves both.

use std::{collections::HashMap, sync::Once};

use micro::{Error, Result};
use sqlx::{AnyPool, Row, any::AnyPoolOptions};

use crate::proto::Port;

/// The database used when `DATABASE_URL` is not set: a SQLite file in the
/// working directory, created if missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://ports.db?mode=rwc";

/// How many rows one INSERT statement carries.
const ROWS_PER_STATEMENT: usize = 100;

/// The ports table.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    table: String,
    /// SQLite takes `?` placeholders: its `$N` ones are looked up by name,
    /// a linear search per parameter that made large statements quadratic.
    sqlite: bool,
}

fn database_error(what: &str, err: sqlx::Error) -> Error {
    Error::unavailable(format!("{what}: {err}")).with_source(err)
}

impl Store {
    /// Connects to `url` (`sqlite://...` or `postgres://...`) and creates
    /// `table` if it does not exist.
    pub async fn connect(url: &str, table: &str) -> Result<Store> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || table.is_empty() {
            return Err(Error::invalid_argument(format!("bad table name {table:?}")));
        }
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            // SQLite takes one writer at a time anyway.
            .max_connections(if sqlite { 1 } else { 4 })
            .after_connect(move |connection, _meta| {
                Box::pin(async move {
                    if sqlite {
                        // Write-ahead logging with NORMAL sync: a commit no
                        // longer waits for a sync of the main file, and a
                        // crash of the process still loses nothing committed.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *connection)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *connection)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(|err| database_error("connecting to the database", err))?;
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                id TEXT PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL, country TEXT NOT NULL,
                alias TEXT NOT NULL, regions TEXT NOT NULL, longitude DOUBLE PRECISION,
                latitude DOUBLE PRECISION, province TEXT NOT NULL, timezone TEXT NOT NULL,
                unlocs TEXT NOT NULL, code TEXT NOT NULL)"
        );
        sqlx::query(&create)
            .execute(&pool)
            .await
            .map_err(|err| database_error("creating the ports table", err))?;
        Ok(Store {
            pool,
            table: table.to_owned(),
            sqlite,
        })
    }

    /// The database from `DATABASE_URL`, or [`DEFAULT_DATABASE_URL`]; the
    /// table from `PORTS_TABLE`, or `ports`.
    pub async fn from_env() -> Result<Store> {
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
        let table = std::env::var("PORTS_TABLE").unwrap_or_else(|_| "ports".to_owned());
        Store::connect(&url, &table).await
    }

    /// Inserts or replaces `ports` in one transaction; the last of several
    /// with one id wins.
    pub async fn upsert(&self, ports: &[Port]) -> Result<u64> {
        let mut latest: HashMap<&str, &Port> = HashMap::with_capacity(ports.len());
        for port in ports {
            latest.insert(&port.id, port);
        }
        let unique: Vec<&Port> = latest.into_values().collect();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|err| database_error("starting a transaction", err))?;
        for rows in unique.chunks(ROWS_PER_STATEMENT) {
            let sql = self.upsert_sql(rows);
            let mut query = sqlx::query(&sql);
            for port in rows {
                query = query
                    .bind(port.id.clone())
                    .bind(port.name.clone())
                    .bind(port.city.clone())
                    .bind(port.country.clone())
                    .bind(json_list(&port.alias))
                    .bind(json_list(&port.regions));
                if let [longitude, latitude] = port.coordinates.as_slice() {
                    query = query.bind(*longitude).bind(*latitude);
                }
                query = query
                    .bind(port.province.clone())
                    .bind(port.timezone.clone())
                    .bind(json_list(&port.unlocs))
                    .bind(port.code.clone());
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(|err| database_error("upserting ports", err))?;
        }
        tx.commit()
            .await
            .map_err(|err| database_error("committing ports", err))?;
        Ok(unique.len() as u64)
    }

    /// The statement for `rows`. Missing coordinates are written as `NULL`
    /// literals rather than bound: sqlx's `Any` driver sends a bound null
    /// in a form PostgreSQL refuses for a float column.
    fn upsert_sql(&self, rows: &[&Port]) -> String {
        const COLUMNS: usize = 12;
        const COORDINATES: [usize; 2] = [6, 7];
        let mut bound = 0;
        let values: Vec<String> = rows
            .iter()
            .map(|port| {
                let params: Vec<String> = (0..COLUMNS)
                    .map(|column| {
                        if COORDINATES.contains(&column) && port.coordinates.len() != 2 {
                            return "NULL".to_owned();
                        }
                        bound += 1;
                        match self.sqlite {
                            true => "?".to_owned(),
                            false => format!("${bound}"),
                        }
                    })
                    .collect();
                format!("({})", params.join(","))
            })
            .collect();
        format!(
            "INSERT INTO {} (id, name, city, country, alias, regions, longitude, latitude, province, timezone, unlocs, code)
             VALUES {}
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, city = excluded.city,
               country = excluded.country, alias = excluded.alias, regions = excluded.regions,
               longitude = excluded.longitude, latitude = excluded.latitude,
               province = excluded.province, timezone = excluded.timezone,
               unlocs = excluded.unlocs, code = excluded.code",
            self.table,
            values.join(",")
        )
    }

    /// How many ports the table holds.
    pub async fn count(&self) -> Result<u64> {
        let row = sqlx::query(&format!("SELECT COUNT(*) FROM {}", self.table))
            .fetch_one(&self.pool)
            .await
            .map_err(|err| database_error("counting ports", err))?;
        let count: i64 = row
            .try_get(0)
            .map_err(|err| database_error("reading the count", err))?;
        Ok(count as u64)
    }

    /// The port with `id`, if stored.
    pub async fn get(&self, id: &str) -> Result<Option<Port>> {
        let row = sqlx::query(&format!(
            "SELECT id, name, city, country, alias, regions, longitude, latitude, province, timezone, unlocs, code FROM {} WHERE id = {}",
            self.table,
            if self.sqlite { "?" } else { "$1" }
        ))
        .bind(id.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| database_error("reading a port", err))?;
        row.map(|row| port_from_row(&row)).transpose()
    }

    /// The mean latitude of the stored ports that have coordinates.
    pub async fn mean_latitude(&self) -> Result<Option<f64>> {
        let row = sqlx::query(&format!("SELECT AVG(latitude) FROM {}", self.table))
            .fetch_one(&self.pool)
            .await
            .map_err(|err| database_error("averaging latitudes", err))?;
        row.try_get::<Option<f64>, _>(0)
            .map_err(|err| database_error("reading the average", err))
    }

    /// Drops the table (for tests that made their own).
    pub async fn drop_table(&self) -> Result<()> {
        sqlx::query(&format!("DROP TABLE IF EXISTS {}", self.table))
            .execute(&self.pool)
            .await
            .map_err(|err| database_error("dropping the table", err))?;
        Ok(())
    }
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

fn port_from_row(row: &sqlx::any::AnyRow) -> Result<Port> {
    let text = |index: usize| -> Result<String> {
        row.try_get::<String, _>(index)
            .map_err(|err| database_error("reading a column", err))
    };
    let list = |index: usize| -> Result<Vec<String>> {
        serde_json::from_str(&text(index)?)
            .map_err(|err| Error::internal(format!("a stored list is not JSON: {err}")))
    };
    let number = |index: usize| -> Result<Option<f64>> {
        row.try_get::<Option<f64>, _>(index)
            .map_err(|err| database_error("reading a column", err))
    };
    let coordinates = match (number(6)?, number(7)?) {
        (Some(longitude), Some(latitude)) => vec![longitude, latitude],
        _ => Vec::new(),
    };
    Ok(Port {
        id: text(0)?,
        name: text(1)?,
        city: text(2)?,
        country: text(3)?,
        alias: list(4)?,
        regions: list(5)?,
        coordinates,
        province: text(8)?,
        timezone: text(9)?,
        unlocs: list(10)?,
        code: text(11)?,
    })
}
