module telestack/lineproto-oracle

go 1.23.0

require github.com/influxdata/influxdb/v2 v2.7.12
