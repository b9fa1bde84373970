-- Keys, indexes and triggers, created once the history is in (faster than row by row checks).

alter table marketplace.products
    add constraint products_seller_fk foreign key (seller_id)
    references marketplace.customers (customer_id);
alter table marketplace.orders
    add constraint orders_customer_fk foreign key (customer_id)
    references marketplace.customers (customer_id);
alter table marketplace.order_items
    add constraint order_items_order_fk foreign key (order_id)
    references marketplace.orders (order_id) on delete cascade;
alter table marketplace.payments
    add constraint payments_order_fk foreign key (order_id)
    references marketplace.orders (order_id) on delete cascade;
alter table marketplace.bids
    add constraint bids_product_fk foreign key (product_id)
    references marketplace.products (product_id) on delete cascade;
alter table marketplace.bids
    add constraint bids_bidder_fk foreign key (bidder_id)
    references marketplace.customers (customer_id);

create index products_seller_idx on marketplace.products (seller_id);
create index orders_customer_idx on marketplace.orders (customer_id);
create index order_items_order_idx on marketplace.order_items (order_id);
create index order_items_product_idx on marketplace.order_items (product_id);
create index payments_order_idx on marketplace.payments (order_id);
create index bids_product_idx on marketplace.bids (product_id);
create index bids_bidder_idx on marketplace.bids (bidder_id);
-- timestamp-mode extraction reads `where updated_at > watermark`
create index customers_updated_idx on marketplace.customers (updated_at);
create index products_updated_idx on marketplace.products (updated_at);
create index orders_updated_idx on marketplace.orders (updated_at);
create index order_items_updated_idx on marketplace.order_items (updated_at);
create index payments_updated_idx on marketplace.payments (updated_at);
create index bids_updated_idx on marketplace.bids (updated_at);

create trigger touch before insert or update on marketplace.customers
    for each row execute function marketplace.touch_updated_at();
create trigger touch before insert or update on marketplace.products
    for each row execute function marketplace.touch_updated_at();
create trigger touch before insert or update on marketplace.orders
    for each row execute function marketplace.touch_updated_at();
create trigger touch before insert or update on marketplace.order_items
    for each row execute function marketplace.touch_updated_at();
create trigger touch before insert or update on marketplace.payments
    for each row execute function marketplace.touch_updated_at();
create trigger touch before insert or update on marketplace.bids
    for each row execute function marketplace.touch_updated_at();

create trigger change_log after insert or update or delete on marketplace.customers
    for each row execute function cdc.record_change('customer_id');
create trigger change_log after insert or update or delete on marketplace.products
    for each row execute function cdc.record_change('product_id');
create trigger change_log after insert or update or delete on marketplace.orders
    for each row execute function cdc.record_change('order_id');
create trigger change_log after insert or update or delete on marketplace.order_items
    for each row execute function cdc.record_change('order_item_id');
create trigger change_log after insert or update or delete on marketplace.payments
    for each row execute function cdc.record_change('payment_id');
create trigger change_log after insert or update or delete on marketplace.bids
    for each row execute function cdc.record_change('bid_id');
